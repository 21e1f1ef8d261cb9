"""Signed webhooks to a real HTTP receiver: retries, dead letters, Retry-After, kill switch."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from promod.admin.registry import Caller, CommandContext, CommandError, Role
from promod.clock import ManualClock
from promod.notify.commands import outbox_drop, outbox_list, outbox_retry, outbox_status
from promod.store.database import Database
from promod.testing import wait_until_async
from tests.notify.conftest import (
    NotifyApp,
    add_campaign,
    add_customer,
    delivery_states,
    enqueue,
    grant_event,
    make_config,
    running_notifier,
)
from tests.notify.support import Receiver, SmtpServer

pytestmark = pytest.mark.anyio

CAP = {"campaign_id": "winback", "cap": "budget", "period": "lifetime"}


def _ctx(app: NotifyApp) -> CommandContext:
    return CommandContext(app=app, caller=Caller(0, 0, 0, "root", Role.ADMIN))


async def test_500_500_200_delivered_once_with_the_same_event_id(
    tmp_path: Path, db: Database
) -> None:
    receiver = Receiver(script=[(500, {}), (500, {})])
    try:
        app = NotifyApp(
            make_config(tmp_path, webhook_url=receiver.url, alerts={"cap.reached": ["backend"]}), db
        )
        event_id = await enqueue(db, "cap.reached", CAP)
        async with running_notifier(app):
            await wait_until_async(lambda: len(receiver.hits) == 3)
            await wait_until_async(lambda: _all(db, "sent"))
            time_after = len(receiver.hits)
    finally:
        receiver.close()
    assert time_after == 3
    assert [h.status for h in receiver.hits] == [500, 500, 200]
    assert {h.event_id for h in receiver.hits} == {event_id}
    assert all(h.signature_ok for h in receiver.hits)
    body = receiver.hits[-1].body
    assert body["event_id"] == event_id and body["type"] == "cap.reached"
    assert body["cap"] == "budget" and body["occurred_at"].endswith("Z")
    [row] = await delivery_states(db)
    assert (row["kind"], row["attempts"], row["last_error"]) == ("alert", 3, None)


async def _all(db: Database, state: str) -> bool:
    rows = await delivery_states(db)
    return bool(rows) and all(r["state"] == state for r in rows)


async def test_400_is_dead_lettered_at_once_then_retried_by_an_operator(
    tmp_path: Path, db: Database
) -> None:
    receiver = Receiver(script=[(400, {})])
    try:
        app = NotifyApp(
            make_config(tmp_path, webhook_url=receiver.url, alerts={"cap.reached": ["backend"]}), db
        )
        await enqueue(db, "cap.reached", CAP)
        async with running_notifier(app):
            await wait_until_async(lambda: _all(db, "dead"))
            status = await outbox_status.handler(_ctx(app), {})
            assert (status["dead"], status["pending"], status["sent"]) == (1, 0, 0)
            [dead] = await outbox_list.handler(_ctx(app), {})
            assert dead["last_error"] == "webhook answered 400" and dead["attempts"] == 1
            assert len(receiver.hits) == 1
            assert await outbox_retry.handler(_ctx(app), {"id": dead["id"]}) == {"retried": 1}
            await wait_until_async(lambda: _all(db, "sent"))
            with pytest.raises(CommandError) as refused:
                await outbox_drop.handler(_ctx(app), {"id": dead["id"]})
            assert refused.value.code == "conflict"
            with pytest.raises(CommandError) as missing:
                await outbox_retry.handler(_ctx(app), {"id": 999})
            assert missing.value.code == "not_found"
    finally:
        receiver.close()
    assert [h.status for h in receiver.hits] == [400, 200]


async def test_always_failing_receiver_is_dead_lettered_after_max_attempts(
    tmp_path: Path, db: Database
) -> None:
    receiver = Receiver(default=(503, {}))
    try:
        app = NotifyApp(
            make_config(tmp_path, webhook_url=receiver.url, alerts={"cap.reached": ["backend"]}), db
        )
        await enqueue(db, "cap.reached", CAP)
        async with running_notifier(app):
            await wait_until_async(lambda: _all(db, "dead"))
            await outbox_drop.handler(_ctx(app), {"id": 1})
    finally:
        receiver.close()
    assert len(receiver.hits) == 4  # [notify] max_attempts = 4
    gaps = [b.at - a.at for a, b in zip(receiver.hits, receiver.hits[1:], strict=False)]
    assert all(gap >= 0.02 for gap in gaps)  # backoff 50ms..200ms with jitter >= 50%
    assert (await delivery_states(db))[0]["state"] == "dropped"


async def test_retry_after_is_honoured(tmp_path: Path, db: Database) -> None:
    receiver = Receiver(script=[(429, {"Retry-After": "1"})])
    try:
        app = NotifyApp(
            make_config(tmp_path, webhook_url=receiver.url, alerts={"cap.reached": ["backend"]}), db
        )
        await enqueue(db, "cap.reached", CAP)
        async with running_notifier(app):
            await wait_until_async(lambda: _all(db, "sent"), timeout=5)
    finally:
        receiver.close()
    first, second = receiver.hits
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.95  # not the 50 ms backoff


async def test_retry_after_an_hour_goes_out_when_the_manual_clock_is_moved_an_hour(
    tmp_path: Path, db: Database
) -> None:
    receiver = Receiver(script=[(503, {"Retry-After": "3600"})])
    clock = ManualClock(start=1_790_000_000)  # 2026-09-21, far from the wall clock's now
    try:
        config = make_config(
            tmp_path, webhook_url=receiver.url, alerts={"cap.reached": ["backend"]}
        )
        app = NotifyApp(config, db, clock=clock)
        await enqueue(db, "cap.reached", CAP)
        async with running_notifier(app):
            await wait_until_async(lambda: len(receiver.hits) == 1)
            await wait_until_async(lambda: _attempts(db, 1))
            [row] = await delivery_states(db)
            assert row["state"] == "pending"
            assert (row["created_at"], row["next_attempt_at"]) == (1_790_000_000, 1_790_003_600)
            clock.advance(3600)  # no real hour, not even a real second
            await wait_until_async(lambda: _all(db, "sent"), timeout=2)
    finally:
        receiver.close()
    assert [h.status for h in receiver.hits] == [503, 200]
    [row] = await delivery_states(db)
    assert (row["sent_at"], row["updated_at"]) == (1_790_003_600, 1_790_003_600)


async def test_an_operator_retry_is_due_at_once_on_the_manual_clock(
    tmp_path: Path, db: Database
) -> None:
    receiver = Receiver(script=[(400, {})])
    clock = ManualClock(start=1_790_000_000)  # behind the wall clock
    try:
        routes = {"cap.reached": ["backend"]}
        config = make_config(tmp_path, webhook_url=receiver.url, alerts=routes)
        app = NotifyApp(config, db, clock=clock)
        await enqueue(db, "cap.reached", CAP)
        async with running_notifier(app):
            await wait_until_async(lambda: _all(db, "dead"))
            [dead] = await outbox_list.handler(_ctx(app), {})
            assert await outbox_retry.handler(_ctx(app), {"id": dead["id"]}) == {"retried": 1}
            await wait_until_async(lambda: _all(db, "sent"), timeout=2)  # the clock never moved
            stats = await outbox_status.handler(_ctx(app), {})
    finally:
        receiver.close()
    assert [h.status for h in receiver.hits] == [400, 200]
    [row] = await delivery_states(db)
    assert row["sent_at"] == 1_790_000_000
    assert stats["oldest_pending_age"] is None and stats["sent"] == 1


async def _attempts(db: Database, n: int) -> bool:
    rows = await delivery_states(db)
    return bool(rows) and rows[0]["attempts"] == n


async def test_killswitch_holds_marketing_but_alerts_go_out(
    tmp_path: Path, db: Database, smtp: SmtpServer
) -> None:
    receiver = Receiver()
    try:
        config = make_config(
            tmp_path,
            smtp_port=smtp.port,
            webhook_url=receiver.url,
            events=True,
            alerts={"killswitch.engaged": ["backend"], "cap.reached": ["backend"]},
        )
        app = NotifyApp(config, db)
        await add_campaign(db)
        await add_customer(db, "c1", "c1@example.org", {"marketing_email": True})
        await db.execute(
            "INSERT INTO meta (key, value) VALUES ('killswitch', ?)",
            (json.dumps({"engaged_at": time.time(), "by": "root"}),),
        )
        grant = await grant_event(db, "c1")
        engaged = await enqueue(db, "killswitch.engaged", {"by": "root"})
        paused = await enqueue(db, "campaign.paused", {"campaign_id": "winback", "reason": "kill"})
        async with running_notifier(app) as notifier:
            await wait_until_async(lambda: set(receiver.delivered()) == {engaged, paused})
            await wait_until_async(lambda: _counts(db, pending=2))
            stats = await outbox_status.handler(_ctx(app), {})
            assert stats["killswitch"] is True and stats["pending"] == 2
            assert smtp.sink.messages == []
            await db.execute("DELETE FROM meta WHERE key = 'killswitch'")
            notifier.wake()
            await wait_until_async(lambda: _all(db, "sent"))
            await wait_until_async(lambda: len(smtp.sink.messages) == 1)
    finally:
        receiver.close()
    assert sorted(receiver.delivered()) == sorted([engaged, paused, grant])
    kinds = {(r["event_id"], r["kind"]) for r in await delivery_states(db)}
    assert kinds == {
        (engaged, "alert"),
        (paused, "webhook"),
        (grant, "webhook"),
        (grant, "message"),
    }


async def _counts(db: Database, **expected: int) -> bool:
    rows = await delivery_states(db)
    return all(sum(r["state"] == s for r in rows) == n for s, n in expected.items())


async def test_one_event_reaches_a_channel_once_even_when_routed_twice(
    tmp_path: Path, db: Database
) -> None:
    receiver = Receiver()
    try:
        app = NotifyApp(
            make_config(
                tmp_path,
                webhook_url=receiver.url,
                events=True,
                alerts={"campaign.completed": ["backend"]},
            ),
            db,
        )
        done = await enqueue(db, "campaign.completed", {"campaign_id": "w", "run_id": 1})
        async with running_notifier(app):
            await wait_until_async(lambda: _all(db, "sent"))
    finally:
        receiver.close()
    assert receiver.delivered() == [done]
