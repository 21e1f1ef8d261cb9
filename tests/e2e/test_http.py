"""The HTTP API of a real daemon over TCP: health, auth, ingest, limits, token reload."""

from __future__ import annotations

import signal

import httpx
import pytest

from promod.http.auth import new_token

pytestmark = pytest.mark.slow


def test_http_api_over_tcp_with_reloaded_tokens(daemon_factory) -> None:
    d = daemon_factory()
    base = "http://" + d.ctl_json("status")["http"]
    token = (d.root / "http-token").read_text().strip()
    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=5) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.post("/v1/events", json={"events": []}).status_code == 401
        r = c.put("/v1/customers/c1", json={"consents": {"marketing_email": True}}, headers=h)
        assert r.status_code == 201, r.text
        event = {"id": "e1", "customer_id": "c1", "name": "signup", "ts": "2026-01-01T00:00:00Z"}
        r = c.post("/v1/events", json={"events": [event, event]}, headers=h)
        assert r.json() == {"accepted": 1, "duplicates": 1, "duplicate_ids": ["e1"]}
        assert c.get("/v1/customers/c1/rewards", headers=h).json()["rewards"] == []

        big = b'{"events": [' + b" " * (2 * 1024 * 1024) + b"]}"
        r = c.post("/v1/events", content=big, headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "payload_too_large"

        # A token added to the config works after SIGHUP, without a restart.
        late, lines = new_token("late", ["read"])
        assert c.get("/metrics", headers={"Authorization": f"Bearer {late}"}).status_code == 401
        d.append_config(lines)
        d.signal(signal.SIGHUP)
        assert d.notify is not None
        d.notify.wait_for("READY=1", count=2)
        metrics = c.get("/metrics", headers={"Authorization": f"Bearer {late}"})
        assert metrics.status_code == 200
        assert 'promod_actor_up{actor="ledger"} 1.0' in metrics.text
        assert 'method="POST",route="/v1/events",status="413"' in metrics.text
        assert c.get("/healthz").status_code == 200
    assert d.stop() == 0
