"""``GET /metrics``: Prometheus text from the store, the supervisor and request latency."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.httpapi.conftest import T0, ApiApp, auth

pytestmark = pytest.mark.anyio


def parse(text: str) -> dict[str, float]:
    """Every sample as ``name{labels}`` (sorted) -> value, read by prometheus_client's parser."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return samples


class FakeSupervisor:
    healthy = True

    def children_info(self) -> list[dict[str, object]]:
        return [
            {"name": "ledger", "state": "running", "restarts": 2},
            {"name": "http", "state": "running", "restarts": 0},
        ]


async def test_metrics_cover_grants_refusals_spend_outbox_actors_latency(
    app: ApiApp, client: httpx.AsyncClient
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
    c = 'campaign="win"back"'
    assert m[f'promod_grants{{{c},provider="wallet_points",state="issued"}}'] == 2
    assert m[f'promod_refusals{{{c},reason="cap:budget"}}'] == 2
    assert m[f'promod_refusals{{{c},reason="frequency"}}'] == 1
    assert m[f'promod_campaign_spend{{{c},currency="EUR"}}'] == 7.5
    assert m["promod_outbox_depth"] == 3
    assert m["promod_outbox_failures"] == 2
    assert m['promod_actor_restarts_total{actor="ledger"}'] == 2
    assert m["promod_up"] == 1
    h = 'method="GET",route="/v1/customers/{customer_id}/rewards",status="404"'
    assert m[f"promod_http_request_duration_seconds_count{{{h}}}"] == 1
    assert m[f'promod_http_request_duration_seconds_bucket{{le="+Inf",{h}}}'] == 1
    unmatched = 'method="GET",route="unmatched",status="404"'
    assert m[f"promod_http_request_duration_seconds_count{{{unmatched}}}"] == 1


async def test_metrics_need_the_read_scope(client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers=auth("events"))).status_code == 403


async def test_metrics_pass_promtool_check(app: ApiApp, client: httpx.AsyncClient) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus'); .ci/run installs it")
    await client.get("/v1/customers/nobody/rewards", headers=auth())
    text = (await client.get("/metrics", headers=auth("reader"))).text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout
