"""The mass-mail path against real servers: bulk headers, sessions, 4xx, 5xx, Retry-After."""

from __future__ import annotations

from pathlib import Path

import pytest

from promod.actors.messages import Wake
from promod.actors.refs import wake
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
from tests.notify.support import MailSink, Receiver, SmtpServer

pytestmark = pytest.mark.anyio


async def test_campaign_mails_carry_the_bulk_headers_and_alerts_do_not(
    tmp_path: Path, db: Database, smtp: SmtpServer
) -> None:
    config = make_config(tmp_path, smtp_port=smtp.port, alerts={"reward.granted": ["mail"]})
    app = notify_app(config, db)
    await add_campaign(db, "xmas.promo")
    await add_customer(db, "c1", "c1@example.org", {"marketing_email": True})
    await grant_event(db, "c1", campaign_id="xmas.promo")
    async with running_notifier(app):
        await wait_until_async(lambda: len(smtp.sink.messages) == 2)
    by_to = {str(m["To"]): m for m in smtp.sink.messages}
    mail, alert = by_to["c1@example.org"], by_to["ops@example.org"]
    assert mail["List-Id"] == "<xmas.promo.example.org>"
    assert mail["Precedence"] == "bulk"
    assert mail["List-Unsubscribe"].startswith("<https://promo.example.org/v1/unsubscribe?")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for name in ("List-Id", "Precedence", "List-Unsubscribe", "List-Unsubscribe-Post"):
        assert name not in alert


async def test_a_batch_is_spread_over_the_configured_number_of_smtp_sessions(
    tmp_path: Path, db: Database
) -> None:
    server = SmtpServer(sink=MailSink(delay=0.05)).start()
    try:
        config = make_config(tmp_path, smtp_port=server.port, smtp_options="connections = 3")
        app = notify_app(config, db)
        await add_campaign(db)
        for n in range(24):
            await add_customer(db, f"c{n}", f"c{n}@example.org", {"marketing_email": True})
            await grant_event(db, f"c{n}")
        async with running_notifier(app):
            await wait_until_async(lambda: len(server.sink.messages) == 24, timeout=15)
            await wait_until_async(lambda: _states_are(db, [("sent", 1)] * 24))
    finally:
        server.stop()
    assert len(set(server.sink.peers)) == 3  # three sessions, each kept for mail after mail


async def test_a_4xx_at_rcpt_is_retried_until_the_server_takes_the_mail(
    tmp_path: Path, db: Database
) -> None:
    server = SmtpServer(sink=MailSink(defer={"busy@example.org": 2})).start()
    try:
        app = notify_app(make_config(tmp_path, smtp_port=server.port), db)
        await add_campaign(db)
        await add_customer(db, "busy", "busy@example.org", {"marketing_email": True})
        await grant_event(db, "busy")
        async with running_notifier(app):
            await wait_until_async(lambda: len(server.sink.messages) == 1, timeout=10)
            await wait_until_async(
                lambda: _states_are(db, [("sent", 3)])
            )  # 2 deferrals, then taken
    finally:
        server.stop()
    assert [code for _, code in server.sink.rcpt_answers] == ["451", "451", "250"]
    assert tuple(await db.fetchone("SELECT count(*) FROM suppressions")) == (0,)


async def _states_are(db: Database, wanted: list[tuple[str, int]]) -> bool:
    return [(r["state"], r["attempts"]) for r in await delivery_states(db)] == wanted


async def test_a_5xx_at_data_is_a_hard_bounce_that_suppresses_the_address_at_once(
    tmp_path: Path, db: Database
) -> None:
    server = SmtpServer(sink=MailSink(refuse_data=("spam@example.org",))).start()
    try:
        app = notify_app(make_config(tmp_path, smtp_port=server.port), db)
        await add_campaign(db)
        await add_customer(db, "spam", "spam@example.org", {"marketing_email": True})
        await add_customer(db, "ok", "ok@example.org", {"marketing_email": True})
        await grant_event(db, "spam")
        await grant_event(db, "ok")
        async with running_notifier(app):
            await wait_until_async(lambda: _states_by_customer(db, {"spam": "dead", "ok": "sent"}))
            second = await grant_event(db, "spam")
            wake(app.actor("notifier"), Wake())
            await wait_until_async(
                lambda: _states_by_customer(db, {"spam": "dead", "ok": "sent"}, also=second)
            )
    finally:
        server.stop()
    rows = {r["event_id"]: r for r in await delivery_states(db)}
    assert (rows[second]["state"], rows[second]["last_error"]) == (
        "skipped",
        "suppressed:bounced",
    )
    assert [m["To"] for m in server.sink.messages] == ["ok@example.org"]
    bounce = await db.fetchone("SELECT reason, customer_id, detail FROM suppressions")
    assert tuple(bounce)[:2] == ("bounced", "spam") and "554" in bounce[2]


async def _states_by_customer(
    db: Database, wanted: dict[str, str], also: str | None = None
) -> bool:
    rows = await delivery_states(db)
    first = {r["customer_id"]: r["state"] for r in rows if r["event_id"] != also}
    if also is not None and not any(
        r["event_id"] == also and r["state"] == "skipped" for r in rows
    ):
        return False
    return first == wanted


async def test_a_retry_after_holds_the_whole_channel_until_it_passes(
    tmp_path: Path, db: Database
) -> None:
    receiver = Receiver(script=[(429, {"Retry-After": "1"})])
    try:
        config = make_config(
            tmp_path,
            webhook_url=receiver.url,
            alerts={"cap.reached": ["backend"]},
            webhook_options="connections = 1",
        )
        app = notify_app(config, db)
        ids = [await enqueue(db, "cap.reached", {"n": n}) for n in range(6)]
        async with running_notifier(app):
            await wait_until_async(
                lambda: {h.event_id for h in receiver.hits if h.status == 200} == set(ids),
                timeout=10,
            )
    finally:
        receiver.close()
    refused, *rest = receiver.hits
    assert refused.status == 429 and len(rest) == 6
    # Nothing more went to the receiver before its second had passed (system clock).
    assert all(h.at - refused.at >= 0.95 for h in rest), [h.at - refused.at for h in rest]
