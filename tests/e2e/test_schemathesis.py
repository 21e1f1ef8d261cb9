"""Schemathesis against a running daemon: every phase, every check, a real token.

The daemon is a subprocess from ``promod init`` with a campaign run waiting for
clearance and a customer with an unsubscribe link and a preference page link, so
generated requests reach the API's logic rather than 404s. Schemathesis reads the
daemon's own ``GET /openapi.json`` and runs the examples, coverage, fuzzing and
stateful phases (the stateful one follows the document's links) with ``--checks
all``. Any failure, and any warning (``warnings.fail-on``), fails the test.
``PROMOD_ST_EXAMPLES`` raises the examples per operation for a longer run outside
``make test``.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from promod.notify.unsubscribe import (
    make_preferences_token,
    make_unsubscribe_token,
    unsubscribe_key_sync,
)
from tests.support.daemon import Daemon, wait_until
from tests.support.data import seed_customers, wallet_spec

pytestmark = pytest.mark.slow

ST = Path(sys.executable).parent / "st"
EXAMPLES = int(os.environ.get("PROMOD_ST_EXAMPLES", "20"))
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC).timestamp()
START = T0 + 3600

# 413 is the documented answer to a body above [http] max_body, a limit on bytes
# that JSON Schema cannot state: 10,000 records fit maxItems but not always 1 MiB, and
# a batch past maxItems is too large before it is too long. Schemathesis' defaults
# plus 413, nothing else.
EXPECTED_POSITIVE = ["2xx", "3xx", "401", "403", "404", "409", "413", "429"]
EXPECTED_NEGATIVE = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]


def _run_in_clearance(d: Daemon) -> int:
    """Apply and launch a campaign that needs clearance; move the clock into its window."""
    seed_customers(d.root / "state" / "promod.db", [f"c{i:02d}" for i in range(5)])
    start = datetime.fromtimestamp(START, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = wallet_spec(schedule=f'start = "{start}"\ndelivery = "immediate"')
    spec += '\n[clearance]\nrequired = true\nlead = "30m"\n'
    (d.root / "spec.toml").write_text(spec)
    assert d.ctl("campaign", "apply", "-f", str(d.root / "spec.toml")).returncode == 0
    assert d.ctl("campaign", "launch", "winback").returncode == 0
    assert d.request("clock.advance", {"seconds": START - 1800 - T0})["ok"]

    def run_id() -> int | None:
        with sqlite3.connect(d.root / "state" / "promod.db") as conn:
            row = conn.execute(
                "SELECT id FROM runs WHERE campaign_id = 'winback' AND state = 'clearance'"
            ).fetchone()
        return None if row is None else int(row[0])

    found: int = wait_until(run_id, timeout=30, what="the run to wait for clearance")
    return found


def _unsubscribe_token(d: Daemon) -> str:
    with sqlite3.connect(d.root / "state" / "promod.db") as conn:
        key = unsubscribe_key_sync(conn)
    return make_unsubscribe_token(key, "c00", "marketing_email")


def _preferences_token(d: Daemon) -> str:
    with sqlite3.connect(d.root / "state" / "promod.db") as conn:
        key = unsubscribe_key_sync(conn)
    return make_preferences_token(key, "c00")


def test_schemathesis_finds_nothing_against_the_daemon(
    daemon_factory: Callable[..., Daemon], tmp_path: Path
) -> None:
    if not ST.exists():
        pytest.fail("schemathesis is not installed (pip install -e '.[test]')")
    d = daemon_factory(env={"PROMOD_TEST_CLOCK": str(T0)})
    base = "http://" + d.ctl_json("status")["http"]
    token = (d.root / "http-token").read_text().strip()
    run = _run_in_clearance(d)
    link = _unsubscribe_token(d)
    preferences = _preferences_token(d)
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f"""
[warnings]
fail-on = true

[generation]
max-examples = {EXAMPLES}

[checks.positive_data_acceptance]
expected-statuses = {EXPECTED_POSITIVE}

[checks.negative_data_rejection]
expected-statuses = {EXPECTED_NEGATIVE}

[parameters]
"path.id" = "winback"
"path.run" = {run}
"query.token" = "{link}"

[[operations]]
include-path = "/v1/preferences"
parameters = {{ "query.token" = "{preferences}" }}
"""
    )
    result = subprocess.run(
        [
            str(ST),
            "--config-file",
            str(config),
            "--no-color",
            "run",
            f"{base}/openapi.json",
            "--url",
            base,
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {token}",
            # One worker: CPython before 3.11.8 can fail ast.parse in parallel threads
            # (gh-106905), which Hypothesis calls to describe Schemathesis' filters.
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--suppress-health-check",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
    )
    out = result.stdout + result.stderr
    (tmp_path / "st-output.txt").write_text(out)
    # Generated bodies can be megabytes long: show every line, each cut short.
    shown = "\n".join(line[:400] for line in out.splitlines())
    assert result.returncode == 0, shown[-30000:]
    assert "0 failures" in shown or "No issues found" in shown, shown[-3000:]
    # The daemon lived through it and still answers.
    assert d.running
    assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
