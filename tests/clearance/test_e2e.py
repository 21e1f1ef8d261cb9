"""Clearance end to end: a daemon subprocess and a real local HTTP server as the site's backend.

The backend receives the signed ``clearance.required`` webhook, pages through the
target list, approves half of it (rejecting some, leaving the rest unanswered); at
the deadline exactly the approved customers are granted; a late approval and one
for a customer not on the list are refused. The second variant restarts the daemon
between the webhook and the deadline, with the same outcome.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.daemon import Daemon, wait_until
from tests.support.data import grants, seed_customers, wallet_spec

pytestmark = pytest.mark.slow

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC).timestamp()
START = T0 + 3600  # the campaign's start: the clearance deadline
LEAD = 1800
SECRET = "e2e-backend-secret"


class Backend:
    """The site's backend: a threaded HTTP server that checks every webhook's signature."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                parts = dict(
                    p.split("=", 1) for p in self.headers.get("Promod-Signature", "").split(",")
                )
                expected = hmac.new(
                    SECRET.encode(), parts.get("t", "").encode() + b"." + body, hashlib.sha256
                ).hexdigest()
                if not hmac.compare_digest(expected, parts.get("v1", "")):
                    backend.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                backend.received.append(
                    {"event_id": self.headers["Promod-Event-Id"], "body": json.loads(body)}
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/promod"

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.received if r["body"]["type"] == kind]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend()
    yield b
    b.close()


def _advance(d: Daemon, seconds: float) -> None:
    res = d.request("clock.advance", {"seconds": seconds})
    assert res["ok"], res


def _client(d: Daemon) -> httpx.Client:
    token = (d.root / "http-token").read_text().strip()
    return httpx.Client(
        base_url="http://" + d.ctl_json("status")["http"],
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def _answer(c: httpx.Client, status_path: str, answers: dict[str, bool]) -> httpx.Response:
    body = {"customers": [{"customer_id": k, "approved": v} for k, v in answers.items()]}
    return c.post(status_path, json=body)


@pytest.mark.parametrize("restart", [False, True], ids=["steady", "restart"])
def test_the_backend_approves_half_and_exactly_those_are_granted(
    daemon_factory: Callable[..., Daemon], backend: Backend, restart: bool
) -> None:
    d = daemon_factory(
        env={"PROMOD_TEST_CLOCK": str(T0)},
        edits={
            r'^url = "http://127\.0\.0\.1:9000/promod"': f'url = "{backend.url}"',
            r'^secret = "[0-9a-f]+"': f'secret = "{SECRET}"',
        },
    )
    db = d.root / "state" / "promod.db"
    ids = [f"c{i:02d}" for i in range(20)]
    seed_customers(db, ids)
    start = datetime.fromtimestamp(START, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = wallet_spec(schedule=f'start = "{start}"\ndelivery = "immediate"')
    spec += '\n[clearance]\nrequired = true\nlead = "30m"\n'
    (d.root / "spec.toml").write_text(spec)
    assert d.ctl("campaign", "apply", "-f", str(d.root / "spec.toml")).returncode == 0
    assert d.ctl("campaign", "launch", "winback").returncode == 0
    assert backend.of_type("clearance.required") == []

    # lead before the start: the target list is snapshotted and the webhook goes out.
    _advance(d, START - LEAD - T0)
    hooks = wait_until(lambda: backend.of_type("clearance.required"), what="the webhook")
    assert backend.bad_signatures == 0
    hook = hooks[0]["body"]
    run_id = hook["run_id"]
    assert hooks[0]["event_id"] == hook["event_id"] == f"clearance.required:{run_id}"
    assert {k: hook[k] for k in ("event_type_id", "campaign_id", "customer_count")} == {
        "event_type_id": 5,
        "campaign_id": "winback",
        "customer_count": 20,
    }
    assert hook["clearance_required_by"] == start
    customers_path = urlsplit(hook["customers_url"]).path
    status_path = urlsplit(hook["status_url"]).path
    assert customers_path == f"/v1/campaigns/winback/runs/{run_id}/customers"
    assert status_path == customers_path + "/status"

    with _client(d) as c:
        # Page through the list, 6 at a time.
        listed: list[str] = []
        cursor: str | None = None
        while True:
            params = {"limit": "6", **({"cursor": cursor} if cursor else {})}
            page = c.get(customers_path, params=params).json()
            listed += [row["customer_id"] for row in page["customers"]]
            assert {row["status"] for row in page["customers"]} == {"pending"}
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(listed) == ids
        approve, reject = listed[::2], listed[1::2][:3]  # ten approved, three rejected
        first = {cid: True for cid in approve[:5]}
        assert _answer(c, status_path, first).status_code == 200
        # A customer not on the list: refused by name, nothing of the call applied.
        r = _answer(c, status_path, {approve[5]: True, "nobody": True})
        assert r.status_code == 409 and "nobody" in r.json()["error"]["message"]
    if restart:
        d.stop()
        d.env["PROMOD_TEST_CLOCK"] = str(START - LEAD)
        d.start()
    with _client(d) as c:
        rest = {cid: True for cid in approve[5:]} | {cid: False for cid in reject}
        assert _answer(c, status_path, rest).status_code == 200
        assert _answer(c, status_path, rest).status_code == 200  # idempotent
        pending = c.get(customers_path, params={"status": "pending"}).json()["customers"]
        assert len(pending) == 7
        show = d.ctl_json("clearance", "show", str(run_id))
        assert (show["approved"], show["rejected"], show["unanswered"], show["open"]) == (
            10,
            3,
            7,
            True,
        )

        # The deadline: exactly the approved are granted; answers stop counting.
        _advance(d, LEAD)
        wait_until(
            lambda: d.ctl_json("campaign", "report", "winback")["granted"] == 10,
            what="the grants",
        )
        granted = sorted(row[0] for row in grants(db, "winback"))
        assert granted == sorted(approve)
        late = _answer(c, status_path, {reject[0]: True})
        assert late.status_code == 409
        assert "closed" in late.json()["error"]["message"]
        statuses = {
            row["customer_id"]: row["status"]
            for row in c.get(customers_path, params={"limit": "100"}).json()["customers"]
        }
    assert {cid for cid, s in statuses.items() if s == "granted"} == set(approve)
    assert {cid for cid, s in statuses.items() if s == "rejected"} == set(reject)
    assert sum(1 for s in statuses.values() if s == "refused") == 7

    # Exactly one webhook for the run, whatever the restarts.
    assert len(backend.of_type("clearance.required")) == 1
    with sqlite3.connect(db) as conn:
        (events,) = conn.execute(
            "SELECT count(*) FROM outbox WHERE type = 'clearance.required'"
        ).fetchone()
        (alerts,) = conn.execute(
            "SELECT count(*) FROM outbox WHERE type = 'clearance.low_approval'"
        ).fetchone()
    assert (events, alerts) == (1, 0)  # 50% approved is not below the sample's floor of 0.5

    report = d.ctl_json("campaign", "report", "winback")
    assert report["refused"] == {"not_approved": 7, "rejected": 3}
    section = report["clearance"]
    assert {k: section[k] for k in ("approved", "rejected", "unanswered", "granted", "capped")} == {
        "approved": 10,
        "rejected": 3,
        "unanswered": 7,
        "granted": 10,
        "capped": 0,
    }
    assert section["approval_rate"] == "0.5000"
    runs = d.ctl_json("clearance", "list")
    assert [(r["run"], r["state"], r["granted"]) for r in runs] == [(run_id, "completed", 10)]
    text = d.ctl("clearance", "show", str(run_id)).stdout
    assert "approval rate" in text and "50.0%" in text
    assert d.ctl("clearance", "list").returncode == 0
