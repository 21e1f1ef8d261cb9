"""``GET /metrics``: Prometheus text from the store, the supervisor and request latency."""

from __future__ import annotations

import re

import httpx
import pytest

from promod.app import App
from tests.httpapi.conftest import T0, auth

pytestmark = pytest.mark.anyio

_SAMPLE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def parse(text: str) -> dict[str, float]:
    """Every sample line as ``name{labels}`` -> value; every line well formed."""
    samples: dict[str, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("# HELP "):
            continue
        m = _SAMPLE.match(line)
        assert m, f"malformed metrics line: {line!r}"
        name = m.group(1)
        assert any(name == t or name.startswith(t + "_") for t in typed), name
        samples[name + (m.group(2) or "")] = float(m.group(3))
    return samples


class FakeSupervisor:
    healthy = True

    def children_info(self) -> list[dict[str, object]]:
        return [
            {"name": "ledger", "state": "running", "restarts": 2},
            {"name": "http", "state": "running", "restarts": 0},
        ]


async def test_metrics_cover_grants_refusals_spend_outbox_actors_latency(
    app: App, client: httpx.AsyncClient
) -> None:
    app.supervisor = FakeSupervisor()
    async with app.db.transaction() as conn:
        await conn.execute(
            "INSERT INTO campaigns (id, version, state, spec, created_at, updated_at)"
            " VALUES ('win\"back', 1, 'running', '{}', ?, ?)",
            (T0, T0),
        )
        await conn.execute(
            "INSERT INTO runs (id, campaign_id, seq, version, state, as_of, started_at, seed)"
            " VALUES (1, 'win\"back', 1, 1, 'running', ?, ?, 1)",
            (T0, T0),
        )
        for i, state in enumerate(["issued", "issued", "reserved", "failed"]):
            await conn.execute(
                "INSERT INTO grants (campaign_id, run_id, customer_id, provider, value_minor,"
                " currency, state, day, created_at) VALUES ('win\"back', 1, ?, 'wallet_points',"
                " 250, 'EUR', ?, 'd', ?)",
                (f"c{i}", state, T0),
            )
        await conn.executemany(
            "INSERT INTO run_targets (run_id, customer_id, rank, due_at, status, reason)"
            " VALUES (1, ?, ?, 0, ?, ?)",
            [
                ("a", 0, "refused", "cap:budget"),
                ("b", 1, "refused", "cap:budget"),
                ("c", 2, "refused", "frequency"),
                ("d", 3, "granted", None),
            ],
        )
        await conn.executemany(
            "INSERT INTO outbox (event_id, type, payload, created_at, state)"
            " VALUES (?, 't', '{}', 0, ?)",
            [("e1", "pending"), ("e2", "pending"), ("e3", "done")],
        )
        await conn.executemany(
            "INSERT INTO deliveries (event_id, type, kind, channel, message, state,"
            " next_attempt_at, created_at, updated_at)"
            " VALUES (?, 't', 'webhook', 'backend', '{}', ?, 0, 0, 0)",
            [("d1", "pending"), ("d2", "dead"), ("d3", "dead"), ("d4", "sent")],
        )
    await client.get("/v1/customers/nobody/rewards", headers=auth())
    await client.get("/nowhere")

    r = await client.get("/metrics", headers=auth("reader"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    m = parse(r.text)
    c = 'campaign="win\\"back"'
    assert m[f'promod_grants{{{c},provider="wallet_points",state="issued"}}'] == 2
    assert m[f'promod_refusals{{{c},reason="cap:budget"}}'] == 2
    assert m[f'promod_refusals{{{c},reason="frequency"}}'] == 1
    assert f'promod_campaign_spend{{{c},currency="EUR"}} 7.50' in r.text
    assert m["promod_outbox_depth"] == 3
    assert m["promod_outbox_failures"] == 2
    assert m['promod_actor_restarts_total{actor="ledger"}'] == 2
    assert m["promod_up"] == 1
    h = 'route="/v1/customers/{customer_id}/rewards",method="GET",status="404"'
    assert m[f"promod_http_request_duration_seconds_count{{{h}}}"] == 1
    assert m[f'promod_http_request_duration_seconds_bucket{{{h},le="+Inf"}}'] == 1
    unmatched = 'route="unmatched",method="GET",status="404"'
    assert m[f"promod_http_request_duration_seconds_count{{{unmatched}}}"] == 1


async def test_metrics_need_the_read_scope(client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers=auth("events"))).status_code == 403
