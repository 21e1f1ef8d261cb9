"""The daemon SIGKILLed with 1,000 pending webhooks and restarted: each event id arrives."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter

import pytest

from promod.config import load_config
from promod.store.database import migrate_sync
from promod.testing import wait_until
from tests.notify.support import Receiver

pytestmark = pytest.mark.slow

COUNT = 1000


def test_sigkill_with_1000_pending_then_restart_delivers_each_event_id(daemon_factory) -> None:
    d = daemon_factory(start=False)
    secret = load_config(d.config_path).channels["backend"].options["secret"]
    receiver = Receiver(secret=secret, delay=0.002)
    try:
        d.edit_config({r'^url = "http://127\.0\.0\.1:9000/promod"': f'url = "{receiver.url}"'})
        config = load_config(d.config_path)
        assert config.alerts["cap.reached"] == ("backend",)
        migrate_sync(config.store.path)
        ids = [f"evt_crash_{n:04d}" for n in range(COUNT)]
        with sqlite3.connect(config.store.path) as conn:
            conn.executemany(
                "INSERT INTO outbox (event_id, type, payload, created_at) VALUES (?, ?, ?, ?)",
                [
                    (eid, "cap.reached", '{"campaign_id":"c","cap":"budget"}', time.time())
                    for eid in ids
                ],
            )
        d.start()
        wait_until(lambda: len(receiver.delivered()) >= 100, timeout=20)
        d.kill()
        at_kill = len(receiver.delivered())
        assert at_kill < COUNT, "the daemon finished before it could be killed"

        d.start()
        wait_until(lambda: set(receiver.delivered()) == set(ids), timeout=30)
        wait_until(lambda: d.ctl_json("outbox")["pending"] == 0, timeout=10)
        status = d.ctl_json("outbox")
        assert (status["sent"], status["dead"], status["events_pending"]) == (COUNT, 0, 0)
        human = d.ctl("outbox")
        assert human.returncode == 0 and "backend" in human.stdout
        missing = d.ctl("outbox", "retry", "999999")
        assert missing.returncode == 1 and "not_found" in missing.stderr
        assert d.stop() == 0
    finally:
        receiver.close()
    counts = Counter(receiver.delivered())
    resent = sum(n - 1 for n in counts.values())
    # Only deliveries in flight at the kill (accepted but not yet marked sent) may
    # reach the receiver twice; it dedupes on Promod-Event-Id.
    assert resent <= 8, counts.most_common(10)
    assert all(h.signature_ok for h in receiver.hits)
