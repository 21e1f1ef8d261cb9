"""Clearance in-process: the webhook event, the two routes, the deadline and the timer."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest

from promod.actors.clearance import ClearanceActor, RunsChanged
from promod.actors.settle import settle
from promod.clearance.store import announce_sync, decide_sync, summary_sync
from promod.store.database import Database
from promod.testing import wait_until_async
from tests.clearance.conftest import START, ApiApp
from tests.httpapi.conftest import auth, make_config

pytestmark = pytest.mark.anyio

BASE = "/v1/campaigns/winback/runs/{run}/customers"


async def _targets(db: Database, run_id: int) -> dict[str, tuple[str, str | None]]:
    rows = await db.fetchall(
        "SELECT customer_id, status, reason FROM run_targets WHERE run_id = ?", (run_id,)
    )
    return {r[0]: (r[1], r[2]) for r in rows}


async def _all_pages(client: httpx.AsyncClient, run_id: int, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = await client.get(BASE.format(run=run_id), params=query, headers=auth())
        assert r.status_code == 200, r.text
        page = r.json()
        out += page["customers"]
        cursor = page["next_cursor"]
        if cursor is None:
            return out


async def _answer(
    client: httpx.AsyncClient, run_id: int, answers: dict[str, bool]
) -> httpx.Response:
    body = {"customers": [{"customer_id": c, "approved": ok} for c, ok in answers.items()]}
    return await client.post(BASE.format(run=run_id) + "/status", json=body, headers=auth())


async def test_announce_enqueues_one_event_per_run(
    app: ApiApp, make_run: Callable[..., Any]
) -> None:
    run_id = await make_run(10)
    for _ in range(2):
        await app.db.run_sync(
            lambda conn: announce_sync(conn, now=app.clock.now(), public_url="https://p.example/")
        )
    rows = await app.db.fetchall("SELECT event_id, type, payload FROM outbox")
    assert len(rows) == 1
    assert rows[0][0] == f"clearance.required:{run_id}"
    assert json.loads(rows[0][2]) == {
        "event_type_id": 5,
        "campaign_id": "winback",
        "run_id": run_id,
        "clearance_required_by": "2026-09-21T14:43:20Z",
        "customer_count": 10,
        "customers_url": f"https://p.example/v1/campaigns/winback/runs/{run_id}/customers",
        "status_url": f"https://p.example/v1/campaigns/winback/runs/{run_id}/customers/status",
    }


async def test_pages_filters_answers_and_refusals(
    app: ApiApp, client: httpx.AsyncClient, make_run: Callable[..., Any]
) -> None:
    run_id = await make_run(10)
    listed = await _all_pages(client, run_id, limit=3)
    ids = [c["customer_id"] for c in listed]
    assert sorted(ids) == [f"c{i:02d}" for i in range(10)]
    assert {c["status"] for c in listed} == {"pending"}

    # Approve five, reject two; then change one answer (the last answer wins).
    r = await _answer(client, run_id, {c: True for c in ids[:5]} | {ids[5]: False, ids[6]: False})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "run_id": run_id,
        "updated": 7,
        "approved": 5,
        "rejected": 2,
        "clearance_required_by": "2026-09-21T14:43:20Z",
    }
    assert (await _answer(client, run_id, {ids[6]: True, ids[4]: False})).status_code == 200
    assert (await _answer(client, run_id, {ids[6]: True})).status_code == 200  # idempotent
    approved = [c["customer_id"] for c in await _all_pages(client, run_id, status="approved")]
    assert approved == [*ids[:4], ids[6]]
    assert [c["customer_id"] for c in await _all_pages(client, run_id, status="rejected")] == [
        ids[4],
        ids[5],
    ]
    assert [c["customer_id"] for c in await _all_pages(client, run_id, status="pending")] == [
        *ids[7:]
    ]

    # A customer not on the list: 409 naming them, and nothing of the call applied.
    r = await _answer(client, run_id, {ids[7]: True, "stranger": True})
    assert r.status_code == 409
    error = r.json()["error"]
    assert error["code"] == "conflict" and "stranger" in error["message"]
    assert error["details"]["not_in_list"] == ["stranger"]
    assert (await _targets(app.db, run_id))[ids[7]] == ("awaiting", None)
    row = await app.db.fetchone(
        "SELECT approved FROM run_targets WHERE run_id = ? AND customer_id = ?", (run_id, ids[7])
    )
    assert row[0] is None

    # Bad bodies and queries are 4xx with an error body.
    url = BASE.format(run=run_id)
    for body in (
        {"customers": [{"customer_id": "c01", "approved": "yes"}]},
        {"customers": [{"customer_id": "c01"}]},
        {"customers": "c01"},
        {"answers": []},
        {"customers": [{"customer_id": "c01", "approved": True, "note": 1}]},
    ):
        r = await client.post(url + "/status", json=body, headers=auth())
        assert r.status_code == 422, body
        assert set(r.json()["error"]) == {"code", "message", "details"}
    too_many = {"customers": [{"customer_id": f"x{i}", "approved": True} for i in range(10_001)]}
    app.config = make_config(max_body="2MiB")
    r = await client.post(url + "/status", json=too_many, headers=auth())
    assert r.status_code == 422
    assert r.json()["error"]["details"]["errors"][0]["path"] == "customers"
    for query in ({"status": "nope"}, {"cursor": "x"}, {"limit": "0"}, {"limit": "10001"}):
        assert (await client.get(url, params=query, headers=auth())).status_code == 422
    # Auth and scope, unknown runs.
    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers=auth("reader"))).status_code == 403
    assert (
        await client.get("/v1/campaigns/other/runs/1/customers", headers=auth())
    ).status_code == 404
    assert (
        await client.get("/v1/campaigns/winback/runs/x/customers", headers=auth())
    ).status_code == 422
    assert (
        await client.get(f"/v1/campaigns/winback/runs/{run_id + 9}/customers", headers=auth())
    ).status_code == 404

    # At the deadline answers stop counting: 409 with a clear error, nothing changes.
    app.clock.set(START)
    r = await _answer(client, run_id, {ids[7]: True})
    assert r.status_code == 409
    assert "closed at 2026-09-21T14:43:20Z" in r.json()["error"]["message"]


async def test_deadline_applies_the_answers_in_one_go(
    app: ApiApp, client: httpx.AsyncClient, make_run: Callable[..., Any]
) -> None:
    run_id = await make_run(10)
    ids = [c["customer_id"] for c in await _all_pages(client, run_id)]
    await _answer(client, run_id, {c: True for c in ids[:5]} | {ids[5]: False})
    assert await app.db.run_sync(lambda conn: decide_sync(conn, run_id, now=START - 1)) is None
    decision = await app.db.run_sync(
        lambda conn: decide_sync(conn, run_id, now=START, min_approval_rate=Decimal("0.6"))
    )
    assert decision is not None
    assert (decision.approved, decision.rejected, decision.unanswered) == (5, 1, 4)
    assert decision.approval_rate == Decimal("0.5000") and decision.low_approval
    targets = await _targets(app.db, run_id)
    assert {c for c, (s, _) in targets.items() if s == "pending"} == set(ids[:5])
    assert targets[ids[5]] == ("refused", "rejected")
    assert {targets[c] for c in ids[6:]} == {("refused", "not_approved")}
    run = await app.db.fetchone("SELECT state FROM runs WHERE id = ?", (run_id,))
    campaign = await app.db.fetchone("SELECT state FROM campaigns WHERE id = 'winback'")
    assert (run[0], campaign[0]) == ("running", "running")
    alert = await app.db.fetchone(
        "SELECT payload FROM outbox WHERE type = 'clearance.low_approval'"
    )
    assert json.loads(alert[0])["approval_rate"] == "0.5000"
    # Decided once: a second look changes nothing.
    assert await app.db.run_sync(lambda conn: decide_sync(conn, run_id, now=START + 5)) is None
    statuses = {c["customer_id"]: c["status"] for c in await _all_pages(client, run_id)}
    assert statuses[ids[0]] == "approved" and statuses[ids[5]] == "rejected"
    assert statuses[ids[9]] == "refused"
    summary = await app.db.run_sync(lambda conn: summary_sync(conn, run_id), write=False)
    assert summary is not None
    assert {k: summary[k] for k in ("customers", "approved", "rejected", "unanswered")} == {
        "customers": 10,
        "approved": 5,
        "rejected": 1,
        "unanswered": 4,
    }
    assert summary["approval_rate"] == "0.5000" and not summary["open"]


async def test_on_timeout_approve_and_a_pilot_keep_their_meaning(
    app: ApiApp, client: httpx.AsyncClient, make_run: Callable[..., Any]
) -> None:
    run_id = await make_run(10, on_timeout="approve", pilot="3")
    listed = await _all_pages(client, run_id)
    assert len(listed) == 10  # held customers are on the list too
    ids = [c["customer_id"] for c in listed]
    await _answer(client, run_id, {ids[0]: False, ids[1]: True})
    held_before = {c for c, (s, _) in (await _targets(app.db, run_id)).items() if s == "held"}
    await app.db.run_sync(lambda conn: decide_sync(conn, run_id, now=START))
    targets = await _targets(app.db, run_id)
    assert targets[ids[0]] == ("refused", "rejected")
    assert {c for c, (s, _) in targets.items() if s == "held"} == held_before - {ids[0]}
    assert sum(1 for s, _ in targets.values() if s == "pending") == 10 - len(held_before) - (
        ids[0] not in held_before
    )
    run = await app.db.fetchone("SELECT state FROM runs WHERE id = ?", (run_id,))
    assert run[0] == "pilot"


async def test_a_stopped_campaign_refuses_answers_and_its_run_stops(
    app: ApiApp, client: httpx.AsyncClient, make_run: Callable[..., Any]
) -> None:
    from promod.campaigns import store as campaigns

    run_id = await make_run(4)
    await campaigns.stop(app.db, "winback", now=app.clock.now())
    assert (await _answer(client, run_id, {"c01": True})).status_code == 409
    decision = await app.db.run_sync(lambda conn: decide_sync(conn, run_id, now=START))
    assert decision is not None and decision.state == "stopped"
    assert set((await _targets(app.db, run_id)).values()) == {("refused", "stopped")}


class _Recorder:
    def __init__(self) -> None:
        self.told: list[object] = []

    def tell(self, message: object) -> None:
        self.told.append(message)


async def test_actor_announces_and_wakes_at_the_deadline_on_the_app_clock(
    app: ApiApp, make_run: Callable[..., Any]
) -> None:
    from promod.config import ClearanceConfig

    others = {"scheduler": _Recorder(), "notifier": _Recorder()}
    app.actor = others.__getitem__  # type: ignore[attr-defined]
    clearance = ClearanceConfig(min_approval_rate=Decimal("0.5"))
    app.config = app.config.model_copy(update={"clearance": clearance})
    actor = ClearanceActor(app)
    async with anyio.create_task_group() as tg:
        await tg.start(actor.run)
        run_id = await make_run(6)
        actor.tell(RunsChanged())
        await wait_until_async(
            lambda: actor.announced >= 1 and actor.next_deadline is not None, timeout=5
        )
        assert actor.next_deadline == START
        assert [type(m).__name__ for m in others["notifier"].told] == ["Wake"]
        app.clock.set(START - 1)  # not yet
        await settle([actor], app.db)
        assert actor.decided == 0
        app.clock.set(START)
        await wait_until_async(lambda: actor.decided >= 1, timeout=5)
        assert [type(m).__name__ for m in others["scheduler"].told] == ["Kick"]
        # No answers at all: everyone refused, and the rate (0) is below the floor.
        assert set((await _targets(app.db, run_id)).values()) == {("refused", "not_approved")}
        assert await app.db.fetchone(
            "SELECT 1 FROM outbox WHERE event_id = ?", (f"clearance.low_approval:{run_id}",)
        )
        actor.request_stop()
        tg.cancel_scope.cancel()
