"""Campaign mails through a real aiosmtpd server: parts, headers, consent, SMTP outages."""

from __future__ import annotations

import email.parser
import email.policy
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from promod.notify.unsubscribe import unsubscribe_key_sync, verify_unsubscribe_token
from promod.store.database import Database
from promod.testing import wait_until_async
from tests.notify.conftest import (
    add_campaign,
    add_customer,
    delivery_states,
    enqueue,
    grant_event,
    make_config,
    notify_app,
    running_notifier,
)
from tests.notify.support import MailSink, SmtpServer, free_port

pytestmark = pytest.mark.anyio


async def test_campaign_mail_arrives_with_parts_and_headers(
    tmp_path: Path, db: Database, smtp: SmtpServer
) -> None:
    app = notify_app(make_config(tmp_path, smtp_port=smtp.port), db)
    await add_campaign(db)
    await add_customer(db, "c42", "Anna@Example.org", {"marketing_email": True})
    event_id = await grant_event(db, "c42")
    async with running_notifier(app):
        await wait_until_async(lambda: len(smtp.sink.messages) == 1)
        await wait_until_async(
            lambda: _states(db, {"sent"}),
        )
    [mail] = smtp.sink.messages
    assert smtp.sink.envelopes == [("promo@example.org", ["Anna@Example.org"])]
    assert mail["To"] == "Anna@Example.org"
    assert mail["From"] == "Promotions <promo@example.org>"
    assert mail["Subject"] == "Your 500 points are waiting"
    assert mail["Promod-Event-Id"] == event_id
    assert mail["Message-ID"] == f"<{event_id}+message+mail@example.org>"
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "Hello c42, 500 points. Code XMAS-1234." in text
    assert "<b>500</b> points, $ sign" in html
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = mail["List-Unsubscribe"].strip("<>")
    assert link.startswith("https://promo.example.org/v1/unsubscribe?token=")
    assert link in text
    token = parse_qs(urlsplit(link).query)["token"][0]
    key = await db.run_sync(unsubscribe_key_sync)
    assert verify_unsubscribe_token(key, token) == ("c42", "marketing_email")
    [row] = await delivery_states(db)
    assert (row["kind"], row["state"], row["attempts"]) == ("message", "sent", 1)


# RFC 5322 3.6.4 msg-id with dot-atom-text on both sides (what a strict parser accepts).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATEXT}(\.{_ATEXT})*"
MSG_ID = re.compile(rf"<{_DOT_ATOM}@{_DOT_ATOM}>")


def _raw_headers(raw: bytes) -> dict[str, str]:
    """The header block as sent: unfolded, not decoded."""
    block = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    unfolded = re.sub(r"\r\n[ \t]", " ", block)
    return dict(line.split(": ", 1) for line in unfolded.split("\r\n"))


async def test_raw_mail_has_valid_message_ids_and_plain_one_click_unsubscribe(
    tmp_path: Path, db: Database, smtp: SmtpServer
) -> None:
    config = make_config(
        tmp_path,
        smtp_port=smtp.port,
        alerts={"reward.granted": ["mail"]},
        smtp_options='unsubscribe_mailto = "unsubscribe@example.org"',
    )
    app = notify_app(config, db)
    await add_campaign(db)
    long_id = "customer-" + "7" * 60  # a token longer than one mail line
    for customer in (long_id, "c2"):
        await add_customer(db, customer, f"{customer}@example.org", {"marketing_email": True})
    await grant_event(db, long_id, event_id="reward.granted:41")
    await grant_event(db, "c2", event_id="reward.granted:42")
    async with running_notifier(app):
        await wait_until_async(lambda: len(smtp.sink.raw) == 4)  # 2 customer mails, 2 alerts
    parser = email.parser.BytesParser(policy=email.policy.default)
    mails = [parser.parsebytes(raw) for raw in smtp.sink.raw]
    ids = [str(m["Message-ID"]) for m in mails]
    assert len(set(ids)) == 4, ids
    for message_id, mail in zip(ids, mails, strict=True):
        assert MSG_ID.fullmatch(message_id), message_id
        assert not mail["Message-ID"].defects
    customer_mails = {
        str(m["Promod-Event-Id"]): (m, raw)
        for m, raw in zip(mails, smtp.sink.raw, strict=True)
        if m["To"] != "ops@example.org"
    }
    assert sorted(customer_mails) == ["reward.granted:41", "reward.granted:42"]
    mail, raw = customer_mails["reward.granted:41"]
    assert mail["Message-ID"] == "<reward.granted%3A41+message+mail@example.org>"
    sent = _raw_headers(raw)
    assert "=?" not in sent["List-Unsubscribe"]  # not RFC 2047-encoded
    assert sent["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = mail.get_body(("plain",)).get_content().rpartition("Unsubscribe: ")[2].strip()
    assert link.startswith("https://promo.example.org/v1/unsubscribe?token=")
    assert len(link) > 78
    assert sent["List-Unsubscribe"] == (
        f"<{link}>, <mailto:unsubscribe@example.org?subject=unsubscribe>"
    )
    assert str(mail["List-Unsubscribe"]) == sent["List-Unsubscribe"]
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    token = parse_qs(urlsplit(link).query)["token"][0]
    key = await db.run_sync(unsubscribe_key_sync)
    assert verify_unsubscribe_token(key, token) == (long_id, "marketing_email")


async def _states(db: Database, wanted: set[str]) -> bool:
    rows = await delivery_states(db)
    return bool(rows) and {r["state"] for r in rows} <= wanted


async def test_customer_without_consent_or_suppressed_gets_no_mail(
    tmp_path: Path, db: Database, smtp: SmtpServer
) -> None:
    app = notify_app(make_config(tmp_path, smtp_port=smtp.port), db)
    await add_campaign(db)
    await add_customer(db, "yes", "yes@example.org", {"marketing_email": True})
    await add_customer(db, "no", "no@example.org", {"marketing_email": False})
    await add_customer(db, "none", "none@example.org")
    await add_customer(db, "gone", "gone@example.org", {"marketing_email": True})
    await add_customer(db, "nomail", None, {"marketing_email": True})
    await db.execute(
        "INSERT INTO suppressions (address, reason, source, created_at)"
        " VALUES ('gone@example.org', 'bounced', 'test', 0)"
    )
    for customer in ("yes", "no", "none", "gone", "nomail"):
        await grant_event(db, customer)
    async with running_notifier(app):
        await wait_until_async(lambda: _states(db, {"sent", "skipped"}))
        await wait_until_async(lambda: len(smtp.sink.messages) == 1)
    assert [m["To"] for m in smtp.sink.messages] == ["yes@example.org"]
    reasons = {r["customer_id"]: (r["state"], r["last_error"]) for r in await delivery_states(db)}
    assert reasons == {
        "yes": ("sent", None),
        "no": ("skipped", "no_consent"),
        "none": ("skipped", "no_consent"),
        "gone": ("skipped", "suppressed:bounced"),
        "nomail": ("skipped", "no_address"),
    }


async def test_smtp_down_then_up_each_mail_delivered_once(tmp_path: Path, db: Database) -> None:
    port = free_port()
    app = notify_app(make_config(tmp_path, smtp_port=port), db)
    await add_campaign(db)
    ids = []
    for n in range(5):
        await add_customer(db, f"c{n}", f"c{n}@example.org", {"marketing_email": True})
        ids.append(await grant_event(db, f"c{n}"))
    server = SmtpServer(port=port)
    async with running_notifier(app):

        async def all_failed_once() -> bool:
            rows = await delivery_states(db)
            return len(rows) == 5 and all(r["attempts"] >= 1 for r in rows)

        await wait_until_async(all_failed_once)
        assert all(r["state"] == "pending" for r in await delivery_states(db))
        server.start()
        try:
            await wait_until_async(lambda: _states(db, {"sent"}), timeout=8)
        finally:
            server.stop()
    assert sorted(server.sink.event_ids()) == sorted(ids)


async def test_refused_recipient_is_dead_lettered_and_suppressed(
    tmp_path: Path, db: Database
) -> None:
    server = SmtpServer(sink=MailSink(refuse=("bad@example.org",))).start()
    try:
        app = notify_app(make_config(tmp_path, smtp_port=server.port), db)
        await add_campaign(db)
        await add_customer(db, "bad", "bad@example.org", {"marketing_email": True})
        await grant_event(db, "bad")
        async with running_notifier(app):
            await wait_until_async(lambda: _states(db, {"dead"}))
    finally:
        server.stop()
    [row] = await delivery_states(db)
    assert row["attempts"] == 1 and "550" in row["last_error"]
    sup = await db.fetchone("SELECT reason, customer_id FROM suppressions")
    assert tuple(sup) == ("bounced", "bad")


async def test_template_file_and_alert_mail(tmp_path: Path, db: Database, smtp: SmtpServer) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "winback.toml").write_text(
        'subject = "Points for ${customer_id}"\ntext = "You got ${reward_amount}."\n'
    )
    app = notify_app(
        make_config(tmp_path, smtp_port=smtp.port, alerts={"cap.reached": ["mail"]}), db
    )
    await add_campaign(db, notify={"channel": "mail", "template": "winback"})
    await add_customer(db, "c1", "c1@example.org")
    await grant_event(db, "c1")
    await enqueue(
        db, "cap.reached", {"campaign_id": "winback", "cap": "budget", "period": "lifetime"}
    )
    async with running_notifier(app):
        await wait_until_async(lambda: len(smtp.sink.messages) == 2)
    by_to = {m["To"]: m for m in smtp.sink.messages}
    assert by_to["c1@example.org"]["Subject"] == "Points for c1"
    body = by_to["c1@example.org"].get_content().replace("\r\n", "\n")
    assert body.split("\n--\n")[0].strip() == "You got 500."
    # Every customer message's footer links the preference page and the unsubscribe link.
    assert "Your email preferences: https://promo.example.org/v1/preferences?token=" in body
    assert "Unsubscribe: https://promo.example.org/v1/unsubscribe?token=" in body
    alert = by_to["ops@example.org"]
    assert alert["Subject"] == "[promod] cap.reached (winback)"
    assert "cap: budget" in alert.get_content()
    assert "List-Unsubscribe" not in alert
