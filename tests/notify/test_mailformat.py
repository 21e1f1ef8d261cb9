"""Mails composed straight to bytes read back like those the email package builds."""

from __future__ import annotations

import email.parser
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest

from promod.notify.channel import Message
from promod.notify.mailformat import compose_email
from promod.notify.smtp import build_email

SENDER = "Promotions <promo@example.org>"
LINK = "https://promo.example.org/v1/unsubscribe?token=" + "x" * 120


def _message(**fields: Any) -> Message:
    values: dict[str, Any] = {
        "event_id": "reward.granted:42",
        "type": "reward.granted",
        "kind": "message",
        "data": {"campaign_id": "winback", "customer_id": "c42"},
        "to": "c42@example.org",
        "customer_id": "c42",
        "subject": "Your 500 points are waiting",
        "text": "Hello c42.\nUnsubscribe: " + LINK,
        "unsubscribe_url": LINK,
    }
    values.update(fields)
    return Message(**values)


def _parse(raw: bytes) -> EmailMessage:
    mail = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(mail, EmailMessage)
    return mail


def _reading(mail: EmailMessage) -> dict[str, Any]:
    """What a mail client shows: decoded headers and each part's type and text.

    Left out: the date, the MIME boundary and the transfer encoding (each builder
    picks its own); line ends are compared as newlines.
    """
    skip = {"Date", "Content-Type", "Content-Transfer-Encoding"}
    headers = {k: str(v) for k, v in mail.items() if k not in skip}
    parts = [
        (part.get_content_type(), part.get_content_charset(), part.get_content())
        for part in mail.walk()
        if not part.is_multipart()
    ]
    parts = [(kind, charset, text.replace("\r\n", "\n")) for kind, charset, text in parts]
    return {"headers": headers, "parts": parts, "type": mail.get_content_type()}


CASES = {
    "text": _message(),
    "text and html": _message(html="<p>Hello <b>c42</b></p>"),
    "html only": _message(text=None, html="<p>Hi</p>"),
    "not ascii": _message(
        subject="Ihre Prämie: 500 Punkte für Sie, " + "ü" * 40,
        text="Grüße, Jürgen\n" + "ä" * 1200 + "\n.\n.starts with a dot\n",
    ),
    "extra header": _message(headers={"X-Campaign": "winback " + "word " * 30}),
    "alert": Message("cap.reached:1", "cap.reached", "alert", {"campaign_id": "w", "cap": "b"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_composed_mail_reads_like_the_email_package_builds_it(case: str) -> None:
    message = CASES[case]
    to = ("ops@example.org",) if message.kind == "alert" else ("c42@example.org",)
    raw = compose_email(message, SENDER, to, "mail", unsubscribe_mailto="u@example.org")
    assert raw is not None
    reference = build_email(message, SENDER, to, "mail", unsubscribe_mailto="u@example.org")
    composed = _parse(raw)
    assert _reading(composed) == _reading(_parse(reference.as_bytes()))
    assert all(not value.defects for value in composed.values())
    lines = raw.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines)
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    if message.kind == "message":
        assert composed["List-Id"] == "<winback.example.org>"
        assert composed["Precedence"] == "bulk"
        head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
        assert f"List-Unsubscribe: <{LINK}>,\r\n <mailto:u@example.org" in head


def test_a_header_with_a_line_break_or_a_reserved_name_is_refused() -> None:
    for headers in ({"X-Evil": "a\r\nBcc: all@example.org"}, {"Subject": "second"}):
        with pytest.raises(ValueError):
            compose_email(_message(headers=headers), SENDER, ("c42@example.org",), "mail")
    with pytest.raises(ValueError, match="line break"):
        compose_email(_message(subject="a\nb"), SENDER, ("c42@example.org",), "mail")


def test_an_address_that_is_not_ascii_is_left_to_the_email_package() -> None:
    message = _message(to="jürgen@example.org")
    assert compose_email(message, SENDER, ("jürgen@example.org",), "mail") is None
