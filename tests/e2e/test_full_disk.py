"""The daemon on a 20 MiB tmpfs that fills up: it keeps serving and resumes by itself."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.notify.support import SECRET, Receiver
from tests.support.daemon import Daemon, wait_until
from tests.support.data import seed_customers, wallet_spec
from tests.support.disk import SmallDisk

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.close()


def disk_daemon(daemon_factory: Any, disk: SmallDisk, receiver: Receiver) -> Daemon:
    state = disk.path / "state"
    state.mkdir(mode=0o750)
    d: Daemon = daemon_factory(
        start=False,
        edits={
            r"^state_dir = .*": f'state_dir = "{state}"',
            r'^url = "sqlite:.*': f'url = "sqlite://{state / "promod.db"}"',
            # Far fewer restarts than an outage makes: giving up would show.
            r"^max_restarts = \d+": "max_restarts = 2",
            r'^url = "http://127\.0\.0\.1:9000/promod"': f'url = "{receiver.url}"',
            r"^secret = .*": f'secret = "{SECRET}"',
        },
    )
    d.start()
    return d


def healthz(d: Daemon) -> int:
    url = d.http_url
    assert url is not None
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as res:
            return int(res.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def store_status(d: Daemon) -> dict[str, Any]:
    status: dict[str, Any] = d.call("status")["store"]
    return status


def waits_for_store(d: Daemon, child: str) -> int:
    return sum(
        1
        for e in d.log_events()
        if e.get("event") == "child waiting for the store" and e.get("child") == child
    )


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute(sql).fetchone()[0])


def test_a_full_disk_is_an_outage_the_daemon_serves_through_and_recovers_from(
    daemon_factory: Any, small_disk: SmallDisk, receiver: Receiver, tmp_path: Path
) -> None:
    d = disk_daemon(daemon_factory, small_disk, receiver)
    db = small_disk.path / "state" / "promod.db"
    seed_customers(db, [f"c{i}" for i in range(20)])
    start = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = tmp_path / "spec.toml"
    spec.write_text(wallet_spec(schedule=f'start = "{start}"\ndelivery = "immediate"'))
    assert d.ctl("campaign", "apply", "-f", str(spec)).returncode == 0
    assert d.ctl("campaign", "launch", "winback").returncode == 0
    assert healthz(d) == 200

    small_disk.fill()
    # A write on the full disk: a clear refusal, not "internal".
    rows = tmp_path / "customers.jsonl"
    rows.write_text('{"id": "new1"}\n')
    res = d.ctl("customers", "import", str(rows))
    assert res.returncode == 1
    assert "unavailable" in res.stderr and "disk full" in res.stderr, res.stderr
    assert str(db) in res.stderr and "free" in res.stderr
    assert "internal" not in res.stderr

    wait_until(lambda: healthz(d) == 503, timeout=10, what="/healthz to report not ready")
    # An HTTP write is a 503 naming the problem, not a 500.
    token = (d.root / "http-token").read_text().strip()
    put = urllib.request.Request(
        f"{d.http_url}/v1/customers/c1",
        data=json.dumps({"email": "c1@example.org"}).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(put, timeout=10)
    assert refused.value.code == 503
    body = json.loads(refused.value.read())
    assert body["error"]["code"] == "unavailable"
    assert "disk full" in body["error"]["message"]
    status = store_status(d)
    assert status["available"] is False
    assert status["reason"] == "disk full"
    assert status["message"].startswith(f"disk full: {db} (")
    # The alert goes out while the disk is still full.
    wait_until(
        lambda: any(h.body.get("type") == "store.unavailable" for h in receiver.hits),
        timeout=15,
        what="the store.unavailable alert",
    )
    alert = next(h for h in receiver.hits if h.body.get("type") == "store.unavailable")
    assert alert.signature_ok
    assert alert.body["reason"] == "disk full" and alert.body["path"] == str(db)
    logged = [e for e in d.log_events() if e.get("event") == "store_unavailable"]
    assert logged and logged[0]["error"].startswith(f"disk full: {db} (")
    assert "free_bytes" in logged[0]

    # The campaign's start comes while the disk is full: the scheduler waits for the
    # store again and again, well past max_restarts, and the daemon stays up.
    wait_until(lambda: waits_for_store(d, "scheduler") > 3, timeout=30, what="scheduler waits")
    assert d.running
    assert not any(e.get("event") == "supervisor_gave_up" for e in d.log_events())

    # The kill switch works on the full disk, and is audited.
    kill = d.ctl("kill")
    assert kill.returncode == 0, kill.stderr
    assert d.call("kill.status")["engaged"] is True
    assert any(r["command"] == "kill.engage" for r in d.ctl_json("audit"))

    small_disk.free_up()
    wait_until(lambda: healthz(d) == 200, timeout=30, what="/healthz ready again")
    assert store_status(d)["available"] is True
    assert d.ctl("kill", "--release").returncode == 0
    wait_until(
        lambda: count(db, "SELECT count(*) FROM grants WHERE campaign_id = 'winback'") == 20,
        timeout=30,
        what="the campaign to grant once the disk has room",
    )
    assert d.ctl("customers", "import", str(rows)).returncode == 0
    assert count(db, "SELECT count(*) FROM outbox WHERE type = 'store.unavailable'") == 1
    assert d.stop() == 0


def test_promod_run_on_a_full_disk_starts_and_reports_it(
    daemon_factory: Any, small_disk: SmallDisk, receiver: Receiver
) -> None:
    d = disk_daemon(daemon_factory, small_disk, receiver)
    assert d.stop() == 0
    small_disk.fill()
    d.start()
    status = store_status(d)
    assert status["available"] is False and status["reason"] == "disk full"
    assert healthz(d) == 503
    assert d.ctl("kill").returncode == 0
    assert d.call("kill.status")["engaged"] is True
    assert d.running
    events = [e.get("event") for e in d.log_events()]
    assert "store_reserve_released" in events
    small_disk.free_up()
    wait_until(lambda: healthz(d) == 200, timeout=30, what="/healthz ready again")
    payload = json.dumps(d.call("status")["store"])
    assert '"available": true' in payload
    assert d.stop() == 0
