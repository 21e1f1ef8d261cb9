"""Mail as it goes on the wire: message ids, list headers, and the bytes of a mail.

:func:`compose_email` writes a campaign mail or an alert straight to RFC 5322
bytes (CRLF line ends, every line at most 998 characters, headers folded at
their spaces to 78 where they can be). It is the mass-mail path: about a tenth of
the cost of building an :class:`email.message.EmailMessage`. Text that is not
ASCII goes as UTF-8: RFC 2047 encoded words in headers, quoted-printable bodies.
``List-Unsubscribe`` is always plain ASCII, folded only between its URIs, never
encoded (mail clients would find no link). A mail whose addresses are not ASCII
is not composed here (None): the channel builds it with the email package::

    raw = compose_email(message, "Promotions <promo@example.org>", ("a@example.org",), "mail")
"""

from __future__ import annotations

import functools
import quopri
import re
import secrets
import string
from collections.abc import Iterable
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr

from promod.notify.channel import Message

__all__ = [
    "MAX_LINE",
    "ONE_CLICK",
    "compose_email",
    "fold_list_unsubscribe",
    "list_id",
    "list_unsubscribe",
    "message_id",
    "sender_header",
]

ONE_CLICK = "List-Unsubscribe=One-Click"
MAX_LINE = 998  # RFC 5322 2.1.1: no line of a message may be longer
FOLD_AT = 78  # RFC 5322 2.1.1: lines should be no longer
UNSUBSCRIBE_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})
# Headers promod writes itself; a message's extra headers may not repeat them.
OWN_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "date",
        "message-id",
        "subject",
        "promod-event-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)
_ID_SAFE = frozenset(string.ascii_letters + string.digits + "-_.")
_ANGLED = re.compile(r"<[^<>\s]+>")
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 2.2: printable ASCII but ':'


@functools.lru_cache(maxsize=64)
def _domain(sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2]
    try:
        return domain.encode("idna").decode("ascii") if domain else "promod.invalid"
    except UnicodeError:
        return "promod.invalid"


def _id_part(text: str) -> str:
    """``text`` as dot-atom text: anything else (and a dot at an edge or after a dot) %-escaped.

    The escaping is reversible, and ``+`` and ``%`` are always escaped, so parts
    joined with ``+`` name exactly one (event, kind, channel).
    """
    out: list[str] = []
    for i, ch in enumerate(text):
        dot_ok = ch != "." or (0 < i < len(text) - 1 and text[i - 1] != ".")
        if ch in _ID_SAFE and dot_ok:
            out.append(ch)
        else:
            out.extend(f"%{byte:02X}" for byte in ch.encode("utf-8"))
    return "".join(out) or "%00"


def message_id(event_id: str, kind: str, channel: str, sender: str) -> str:
    """A valid RFC 5322 msg-id, the same for every retry of one delivery, unique per delivery."""
    left = "+".join(_id_part(part) for part in (event_id, kind, channel))
    return f"<{left}@{_domain(sender)}>"


def list_id(message: Message, channel: str, sender: str) -> str:
    """The ``List-Id`` of a campaign mail (RFC 2919): one list per campaign and sender domain."""
    campaign = message.data.get("campaign_id")
    label = _id_part(str(campaign)) if campaign else _id_part(channel)
    return f"<{label}.{_domain(sender)}>"


def list_unsubscribe(url: str, mailto: str | None = None) -> str:
    """The ``List-Unsubscribe`` value: the one-click URL first, then the mailto (RFC 2369)."""
    uris = [f"<{url}>"]
    if mailto:
        uris.append(f"<mailto:{mailto}?subject=unsubscribe>")
    return ", ".join(uris)


def fold_list_unsubscribe(name: str, value: str, linesep: str = "\r\n") -> str:
    """``name: <uri>,`` one URI a line, ending in ``linesep``; ValueError if it cannot go so."""
    uris = _ANGLED.findall(value)
    rest = _ANGLED.sub("", value)
    if not value.isascii() or not uris or not re.fullmatch(r"[\s,]*", rest):
        raise ValueError(f"List-Unsubscribe must be ASCII <URI>s, got {value!r}")
    lines = [f"{name}: {uris[0]}", *(f" {uri}" for uri in uris[1:])]
    if any(len(line) + 1 > MAX_LINE for line in lines):
        raise ValueError("List-Unsubscribe: a URI is longer than a mail line may be")
    return f",{linesep}".join(lines) + linesep


@functools.lru_cache(maxsize=64)
def sender_header(sender: str) -> str:
    """The ``From`` value: the display name RFC 2047-encoded when it is not ASCII."""
    name, address = parseaddr(sender)
    if sender.isascii():
        return sender
    return formataddr((name, address), charset="utf-8")


@functools.lru_cache(maxsize=64)
def _envelope_address(sender: str) -> str:
    return parseaddr(sender)[1]


def _fold(name: str, value: str) -> str:
    """One header field, folded, ending in CRLF."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name!r} holds a line break")
    if not value.isascii():
        encoded = Header(value, "utf-8", header_name=name, maxlinelen=FOLD_AT).encode(
            linesep="\r\n"
        )
        return f"{name}: {encoded}\r\n"
    line = f"{name}: {value}"
    if len(line) <= FOLD_AT:
        return line + "\r\n"
    out: list[str] = []
    current = f"{name}:"
    for word in value.split(" "):
        piece = " " + word
        if len(current) + len(piece) > FOLD_AT and current != f"{name}:":
            out.append(current)
            current = piece
        else:
            current += piece
    out.append(current)
    if any(len(part) > MAX_LINE for part in out):
        raise ValueError(f"header {name!r} has a word longer than a mail line may be")
    return "\r\n".join(out) + "\r\n"


def _body(text: str, subtype: str) -> str:
    """A text part: its two MIME headers, a blank line, the encoded text."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    if text.isascii() and all(len(line) <= MAX_LINE for line in text.split("\n")):
        encoding, body = "7bit", text
    else:
        encoding = "quoted-printable"
        body = quopri.encodestring(text.encode("utf-8")).decode("ascii")
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n" + body.replace("\n", "\r\n")
    )


def _alert_text(message: Message) -> str:
    lines = [f"promod alert: {message.type}", ""]
    for key, value in message.data.items():
        lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def _extra_headers(message: Message, own_unsubscribe: bool) -> Iterable[tuple[str, str]]:
    for name, value in message.headers.items():
        lowered = name.lower()
        if own_unsubscribe and lowered in UNSUBSCRIBE_HEADERS:
            continue
        if not _HEADER_NAME.fullmatch(name) or lowered in OWN_HEADERS:
            raise ValueError(f"a message may not set the header {name!r}")
        yield name, str(value)


def compose_email(
    message: Message,
    sender: str,
    recipients: tuple[str, ...],
    channel: str,
    *,
    unsubscribe_mailto: str | None = None,
) -> bytes | None:
    """The mail for ``message`` (customer message or alert) as bytes, or None (see above)."""
    if not all(r.isascii() for r in recipients) or not _envelope_address(sender).isascii():
        return None
    head = [
        _fold("From", sender_header(sender)),
        _fold("To", ", ".join(recipients)),
        _fold("Date", formatdate(localtime=False, usegmt=True)),
        _fold("Message-ID", message_id(message.event_id, message.kind, channel, sender)),
        _fold("Promod-Event-Id", message.event_id),
    ]
    if message.kind == "message":
        head.append(_fold("Subject", message.subject or ""))
        own = message.unsubscribe_url is not None
        named: set[str] = set()
        for name, value in _extra_headers(message, own):
            named.add(name.lower())
            if name.lower() == "list-unsubscribe":
                head.append(fold_list_unsubscribe(name, value))
            else:
                head.append(_fold(name, value))
        if message.unsubscribe_url is not None:
            value = list_unsubscribe(message.unsubscribe_url, unsubscribe_mailto)
            head.append(fold_list_unsubscribe("List-Unsubscribe", value))
            head.append(_fold("List-Unsubscribe-Post", ONE_CLICK))
        if "list-id" not in named:
            head.append(_fold("List-Id", list_id(message, channel, sender)))
        if "precedence" not in named:
            head.append(_fold("Precedence", "bulk"))
        text, html = message.text, message.html
    else:
        subject = f"[promod] {message.type}"
        campaign = message.data.get("campaign_id")
        if campaign:
            subject += f" ({campaign})"
        head.append(_fold("Subject", subject))
        text, html = _alert_text(message), None
    head.append("MIME-Version: 1.0\r\n")
    if text is not None and html is not None:
        boundary = f"=_promod_{secrets.token_hex(12)}"
        # The CRLF before a boundary line belongs to the boundary (RFC 2046 5.1.1).
        parts = "".join(
            f"\r\n--{boundary}\r\n{_body(part, subtype)}"
            for part, subtype in ((text, "plain"), (html, "html"))
        )
        head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n')
        mail = "".join(head) + "\r\n" + parts + f"\r\n--{boundary}--\r\n"
    elif html is not None:
        mail = "".join(head) + _body(html, "html")
    else:
        mail = "".join(head) + _body(text or "", "plain")
    return mail.encode("ascii")
