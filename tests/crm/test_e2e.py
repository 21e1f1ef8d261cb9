"""CRM sync end to end: the daemon as a subprocess, a real local HTTP CRM, a CSV drop dir."""

from __future__ import annotations

import csv
import os
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.crm import TOKEN, CrmServer, recipient
from tests.support.daemon import Daemon, wait_until

pytestmark = pytest.mark.slow

T0 = datetime(2026, 12, 1, 2, 59, tzinfo=UTC).timestamp()  # a minute before the refresh
DAY = 86400.0


def http_crm(url: str, **extra: str) -> dict[str, str]:
    options = "\n".join(f"{k} = {v}" for k, v in extra.items())
    return {
        r'^connector = "csv"\ndir = [^\n]*$': (
            f'connector = "http"\nurl = "{url}"\nauth = "bearer"\ntoken = "{TOKEN}"\n'
            f"page_size = 4\nretry = 0.05\nmax_retry = 2\n{options}"
        ),
        r'^max_change = "0.2"$': 'max_change = "0.3"',
    }


@pytest.fixture
def crm() -> Iterator[CrmServer]:
    server = CrmServer([recipient(f"c{i}") for i in range(10)])
    yield server
    server.close()


def _db(d: Daemon) -> sqlite3.Connection:
    return sqlite3.connect(d.root / "state" / "promod.db", timeout=30)


def members(d: Daemon, name: str = "crm-main") -> set[str]:
    with _db(d) as conn:
        return {
            r[0]
            for r in conn.execute("SELECT customer_id FROM custom_lists WHERE name = ?", (name,))
        }


def advance(d: Daemon, seconds: float) -> None:
    res = d.request("clock.advance", {"seconds": seconds})
    assert res["ok"], res


def history(d: Daemon) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = d.ctl_json("crm", "history", "main")
    return runs


def wait_runs(d: Daemon, count: int, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until ``count`` runs are finished; the newest."""

    def done() -> dict[str, Any] | None:
        runs = history(d)
        if len(runs) >= count and runs[0]["state"] != "running":
            return runs[0]
        return None

    run: dict[str, Any] = wait_until(done, timeout=timeout, what=f"{count} CRM run(s)")
    return run


def suppress(d: Daemon, cid: str, reason: str, at: float) -> None:
    with _db(d) as conn:
        conn.execute(
            "INSERT INTO suppressions (address, reason, source, customer_id, detail, created_at)"
            " VALUES (?, ?, 'smtp', ?, NULL, ?)",
            (f"{cid}@example.org", reason, cid, at),
        )
        if reason == "unsubscribed":
            conn.execute("UPDATE customer_consents SET granted = 0 WHERE customer_id = ?", (cid,))


def outbox(d: Daemon, type: str) -> list[str]:
    with _db(d) as conn:
        return [r[0] for r in conn.execute("SELECT payload FROM outbox WHERE type = ?", (type,))]


def test_daily_refresh_replaces_the_list_after_exporting_suppressions_and_keeps_them_out(
    daemon_factory: Any, crm: CrmServer
) -> None:
    crm.records.insert(3, recipient("f1", consent="transactional"))
    crm.records.insert(6, recipient("f2", media_type="sms"))
    d = daemon_factory(edits=http_crm(crm.url), env={"PROMOD_TEST_CLOCK": str(T0)})
    assert d.ctl_json("crm", "list")[0]["state"] == "never run"

    advance(d, 60)  # 03:00: the daily refresh
    run = wait_runs(d, 1)
    assert run["state"] == "applied", run
    assert members(d) == {f"c{i}" for i in range(10)}
    assert (run["fetched"], run["invalid"], run["added"]) == (12, 2, 10)
    assert [e["record"] for e in run["errors"]] == [4, 7]
    assert "transactional" in run["errors"][0]["message"]
    assert "sms" in run["errors"][1]["message"]
    assert set(crm.auth) == {f"Bearer {TOKEN}"}
    with _db(d) as conn:
        assert not conn.execute("SELECT 1 FROM customers WHERE id LIKE 'f%'").fetchall()
        granted = conn.execute(
            "SELECT count(*) FROM customer_consents"
            " WHERE consent = 'marketing_email' AND granted = 1"
        ).fetchone()[0]
    assert granted == 10

    # c1 unsubscribes and c2 bounces in promod; the CRM still lists both as opted in.
    suppress(d, "c1", "unsubscribed", T0 + 120)
    suppress(d, "c2", "bounced", T0 + 130)
    crm.requests.clear()
    advance(d, DAY)
    run = wait_runs(d, 2)
    assert run["state"] == "applied", run
    assert members(d) == {f"c{i}" for i in range(10)} - {"c1", "c2"}
    assert (run["exported"], run["suppressed"], run["removed"]) == (2, 2, 2)
    # Suppressions went out before the first page was asked for (responses go on their own).
    order = [r for r in crm.requests if r[1] != "/api/responses"]
    assert order[0] == ("POST", "/api/suppressions")
    assert order[1][0] == "GET"
    sent = {r["email"]: r for r in crm.posted["/api/suppressions"][0]["records"]}
    assert sent["c1@example.org"]["entity_id"] == "ent-c1"
    assert sent["c1@example.org"]["reason"] == "unsubscribed"
    assert sent["c2@example.org"]["entity_type"] == "contact"
    assert sent["c2@example.org"]["reason"] == "bounced"

    # The CRM sends newer opt-ins: a fresh opt_in_id for c1, a later time for c2.
    crm.records = [r for r in crm.records if r["id"] not in ("c1", "c2")]
    crm.records += [
        recipient("c1", opt_in_id="oi-c1-2"),
        recipient("c2", opted_in_at=datetime.fromtimestamp(T0 + DAY + 300, UTC).isoformat()),
    ]
    advance(d, 600)
    res = d.ctl("crm", "sync", "main")
    assert res.returncode == 0, res.stderr
    assert "applied" in res.stdout
    assert members(d) == {f"c{i}" for i in range(10)}
    with _db(d) as conn:
        assert conn.execute("SELECT count(*) FROM suppressions").fetchone()[0] == 0
        assert (
            conn.execute(
                "SELECT granted FROM customer_consents WHERE customer_id = 'c1'"
            ).fetchone()[0]
            == 1
        )
    # Already exported suppressions are not sent again.
    assert len(crm.posted["/api/suppressions"]) == 1

    # A CRM export that lost 60% of the list is held, alerts once, waits for an operator.
    crm.records = [recipient(f"c{i}") for i in range(4)]
    advance(d, DAY)
    run = wait_runs(d, 4)
    assert run["state"] == "held", run
    assert run["removed"] == 6
    assert members(d) == {f"c{i}" for i in range(10)}
    wait_until(lambda: len(outbox(d, "crm.sync_held")) == 1, what="the held alert")
    status = d.ctl_json("crm", "status", "main")
    assert status["held"]["id"] == run["id"]
    res = d.ctl("crm", "apply", "main")
    assert res.returncode == 0, res.stderr
    assert members(d) == {f"c{i}" for i in range(4)}
    assert len(outbox(d, "crm.sync_held")) == 1
    assert history(d)[0]["state"] == "applied"
    assert d.ctl("crm", "discard", "main").returncode == 1  # nothing held any more
    # Every operator command is audited.
    with _db(d) as conn:
        audited = [r[0] for r in conn.execute("SELECT command FROM audit_log")]
    assert "crm.sync" in audited and "crm.apply" in audited and "crm.discard" in audited
    with _db(d) as conn:
        refreshes = [
            r[0] for r in conn.execute("SELECT args FROM audit_log WHERE command = 'crm.refresh'")
        ]
    assert len(refreshes) == 4
    assert '"trigger": "schedule"' in refreshes[0] and '"state": "applied"' in refreshes[0]


def test_a_crm_that_is_down_or_answers_500_or_429_is_retried_with_backoff_and_reported(
    daemon_factory: Any, crm: CrmServer
) -> None:
    d = daemon_factory(edits=http_crm(crm.url), env={"PROMOD_TEST_CLOCK": str(T0)})
    crm.fail(500, 429)
    res = d.ctl("crm", "sync", "main")
    assert res.returncode == 0, res.stderr
    gets = [path for method, path in crm.requests if method == "GET"]
    assert gets[:3] == ["/api/recipients?limit=4"] * 3  # 500, 429, then the page
    retries = [e for e in d.log_events() if e.get("event") == "crm_retry"]
    assert [r["attempt"] for r in retries] == [1, 2]
    assert retries[1]["pause"] >= 1.0  # Retry-After: 1 was honoured
    assert members(d) == {f"c{i}" for i in range(10)}

    crm.fail(*([503] * 10))
    res = d.ctl("crm", "sync", "main")
    assert res.returncode == 1
    assert "HTTP 503 (after 5 attempts)" in res.stderr
    run = history(d)[0]
    assert run["state"] == "failed" and "HTTP 503" in run["error"]
    assert members(d) == {f"c{i}" for i in range(10)}  # the old list stays
    wait_until(lambda: outbox(d, "crm.sync_failed"), what="the failure alert")

    crm.close()  # down: the connection is refused
    res = d.ctl("crm", "sync", "main")
    assert res.returncode == 1
    assert "ConnectError" in res.stderr
    assert members(d) == {f"c{i}" for i in range(10)}


def test_a_sync_killed_half_way_keeps_the_old_list_and_the_restart_completes_it(
    daemon_factory: Any, crm: CrmServer
) -> None:
    d = daemon_factory(edits=http_crm(crm.url), env={"PROMOD_TEST_CLOCK": str(T0)})
    assert d.ctl("crm", "sync", "main").returncode == 0
    assert len(members(d)) == 10

    crm.records = [recipient(f"n{i}") for i in range(3)] + [recipient(f"c{i}") for i in range(9)]
    crm.block_page(2)
    assert d.request("crm.sync", {"name": "main"})["ok"]
    assert crm.page_waiting.wait(30)

    def fetched() -> int:
        status = d.request("crm.status", {"name": "main"})
        assert status["ok"], status
        return int((status["result"]["running"] or {}).get("fetched", 0))

    wait_until(lambda: fetched() == 4, what="page 1 fetched")  # page 2 is being answered
    d.kill()
    assert len(members(d)) == 10 and "n0" not in members(d)

    crm.release()
    d.start()
    run = wait_runs(d, 2)
    runs = history(d)
    assert runs[1]["state"] == "failed" and "interrupted" in runs[1]["error"]
    assert run["state"] == "applied", run
    assert members(d) == {f"n{i}" for i in range(3)} | {f"c{i}" for i in range(9)}
    with _db(d) as conn:
        assert conn.execute("SELECT count(*) FROM crm_staged").fetchone()[0] == 0


def _csv_config(drop: Path, schedule: str = "daily 03:00") -> dict[str, str]:
    return {
        r'^connector = "csv"\ndir = [^\n]*$': f'connector = "csv"\ndir = "{drop}"',
        r'^schedule = "daily 03:00"$': f'schedule = "{schedule}"',
        r'^max_change = "0.2"$': 'max_change = "1"',
        r'^response_retention = "30d"$': 'response_retention = "14d"',
    }


def _write_recipients(drop: Path, ids: list[str]) -> None:
    with (drop / "recipients.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "id",
                "email",
                "attr.tier",
                "opt_in_id",
                "description",
                "media_type",
                "entity_type",
                "entity_id",
            ]
        )
        for cid in ids:
            writer.writerow(
                [
                    cid,
                    f"{cid}@example.org",
                    "gold",
                    f"oi-{cid}",
                    "newsletter",
                    "email",
                    "lead",
                    f"L-{cid}",
                ]
            )


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_drop_dir_refresh_exports_and_responses_pruned_after_retention(
    daemon_factory: Any, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    _write_recipients(drop, ["a1", "a2", "a3"])
    d = daemon_factory(edits=_csv_config(drop), env={"PROMOD_TEST_CLOCK": str(T0)})
    advance(d, 60)
    assert wait_runs(d, 1)["state"] == "applied"
    assert members(d) == {"a1", "a2", "a3"}
    with _db(d) as conn:
        assert conn.execute("SELECT attributes FROM customers WHERE id = 'a1'").fetchone()[0] == (
            '{"tier":"gold"}'
        )
    token = (d.root / "http-token").read_text().strip()
    metrics = httpx.get(
        "http://" + d.ctl_json("status")["http"] + "/metrics",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert metrics.status_code == 200, metrics.text
    values = dict(
        line.rsplit(" ", 1) for line in metrics.text.splitlines() if line.startswith("promod_crm")
    )
    assert float(values['promod_crm_last_success_timestamp{connector="main"}']) == T0 + 60
    assert float(values['promod_crm_rows{connector="main",kind="members"}']) == 3

    suppress(d, "a1", "unsubscribed", T0 + 100)
    suppress(d, "a2", "bounced", T0 + 110)
    # 04:00: responses go out with their entities.
    advance(d, 3600)
    responses = drop / "responses-2026-12-01.csv"
    wait_until(responses.exists, what="the responses file")
    rows = _read(responses)
    assert {(r["response"], r["entity_type"], r["entity_id"]) for r in rows} == {
        ("unsubscribed", "lead", "L-a1"),
        ("bounced_hard", "lead", "L-a2"),
    }
    assert stat.S_IMODE(os.stat(responses).st_mode) & 0o007 == 0

    # The next refresh exports the suppressions first, into two files, then refreshes.
    advance(d, DAY - 3600)
    run = wait_runs(d, 2)
    assert run["exported"] == 2 and run["suppressed"] == 2
    assert members(d) == {"a3"}
    assert [r["entity_id"] for r in _read(drop / "unsubscriptions.csv")] == ["L-a1"]
    assert [r["entity_id"] for r in _read(drop / "bounces.csv")] == ["L-a2"]
    assert not list(drop.glob(".*.tmp"))

    with _db(d) as conn:
        kept = conn.execute("SELECT count(*), count(exported_at) FROM crm_responses").fetchone()
    assert kept == (2, 2)
    # Past the 14-day retention, the responses are pruned at the next export.
    advance(d, 15 * DAY)

    def pruned() -> bool:
        with _db(d) as conn:
            return conn.execute("SELECT count(*) FROM crm_responses").fetchone()[0] == 0

    wait_until(pruned, what="the responses to be pruned")


def test_refresh_on_an_interval_runs_on_the_system_clock(
    daemon_factory: Any, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    _write_recipients(drop, ["s1", "s2"])
    d = daemon_factory(edits=_csv_config(drop, schedule="every 2s"))
    wait_runs(d, 1, timeout=20)
    assert members(d) == {"s1", "s2"}
    _write_recipients(drop, ["s1", "s3"])
    wait_until(lambda: members(d) == {"s1", "s3"}, timeout=20, what="the next refresh")


def test_a_connector_option_its_type_refuses_is_a_config_error_naming_the_key(
    daemon_factory: Any,
) -> None:
    d = daemon_factory(
        start=False,
        edits={
            r'^connector = "csv"\ndir = [^\n]*$': 'connector = "http"\nurl = "ftp://x"\ntoken = "t"'
        },
    )
    d.spawn()
    assert d.wait(20) == 1
    assert "crm.main.url" in d.logs()
