"""POST /v1/events' group commit over a real store: requests arriving together share a
transaction, each keeps its own result, and one failing batch fails only itself."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from promod.app import App
from promod.customers.records import Event
from promod.http.events import EventWriter
from promod.store.database import Database
from tests.httpapi.conftest import auth

pytestmark = pytest.mark.anyio


def _events(ids: list[str]) -> list[Event]:
    return [
        Event.model_construct(event_id=i, customer_id="c1", name="purchase", ts=1, properties={})
        for i in ids
    ]


async def _ids(db: Database) -> list[str]:
    rows = await db.fetchall("SELECT event_id FROM events ORDER BY seq")
    return [str(r[0]) for r in rows]


async def test_concurrent_batches_share_commits_and_each_id_is_stored_once(db: Database) -> None:
    writer = EventWriter(db)
    results: dict[int, tuple[list[str], list[str]]] = {}

    async def request(n: int) -> None:
        # Neighbouring requests overlap by one id: exactly one of them stores it.
        stored, duplicates = await writer.store(_events([f"e{n}", f"e{n + 1}"]))
        results[n] = ([str(s.event.event_id) for s in stored], duplicates)

    async with anyio.create_task_group() as tg:
        for n in range(0, 40, 2):
            tg.start_soon(request, n)
            tg.start_soon(request, n + 1)
    assert writer.batches == 40
    assert writer.transactions < 40  # requests waiting for the writer were stored together
    stored_ids = [i for stored, _ in results.values() for i in stored]
    assert sorted(stored_ids) == sorted(f"e{n}" for n in range(41))
    assert sorted(await _ids(db)) == sorted(stored_ids)
    for stored, duplicates in results.values():
        assert len(stored) + len(duplicates) == 2
    seqs = await db.fetchall("SELECT seq FROM events ORDER BY seq")
    assert [r[0] for r in seqs] == list(range(1, 42))


async def test_a_failing_batch_fails_only_its_own_request(db: Database) -> None:
    writer = EventWriter(db)
    bad = [Event.model_construct(event_id="bad", customer_id=None, name="x", ts=1, properties={})]
    outcome: dict[str, Any] = {}

    async def request(name: str, events: list[Event]) -> None:
        try:
            outcome[name] = await writer.store(events)
        except Exception as exc:
            outcome[name] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(request, "first", _events(["a"]))
        tg.start_soon(request, "bad", bad)
        tg.start_soon(request, "last", _events(["b", "c"]))
    assert isinstance(outcome["bad"], Exception)
    assert len(outcome["first"][0]) == 1 and len(outcome["last"][0]) == 2
    assert sorted(await _ids(db)) == ["a", "b", "c"]


async def test_concurrent_posts_answer_each_their_own_counts(
    app: App, client: httpx.AsyncClient
) -> None:
    answers: list[dict[str, Any]] = []

    async def post(n: int) -> None:
        event = {"id": f"e{n % 5}", "customer_id": "c1", "name": "purchase",
                 "ts": "2026-11-20T18:03:00Z"}  # fmt: skip
        r = await client.post("/v1/events", json={"events": [event]}, headers=auth())
        assert r.status_code == 200
        answers.append(r.json())

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(post, n)
    assert sum(a["accepted"] for a in answers) == 5
    assert sum(a["duplicates"] for a in answers) == 15
    assert sorted(await _ids(app.db)) == [f"e{n}" for n in range(5)]
