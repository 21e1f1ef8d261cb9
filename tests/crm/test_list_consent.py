"""A message to a member of a CRM list is checked against the list's consent."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from promod.notify.deliveries import Routing, _Fanout
from promod.store.database import migrate_sync

NOW = 1_796_000_000.0


def _db(tmp_path: Path) -> sqlite3.Connection:
    path = tmp_path / "promod.db"
    migrate_sync(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "INSERT INTO customers (id, email, attributes, created_at, updated_at)"
        " VALUES ('c1', 'c1@example.org', '{}', 'x', 'x')"
    )
    conn.execute(
        "INSERT INTO customer_consents (customer_id, consent, granted, updated_at, source)"
        " VALUES ('c1', 'crm_newsletter', 0, 'x', 'crm:main'),"
        " ('c1', 'marketing_email', 1, 'x', 'api')"
    )
    for cid, spec in (
        ("vip", {"kind": "custom_list", "list": "crm-main"}),
        ("other", {"kind": "custom_list", "list": "vip-2026"}),
    ):
        spec["notify"] = {"channel": "mail", "consent": "marketing_email"}
        conn.execute(
            "INSERT INTO campaigns (id, version, state, spec, created_at, updated_at)"
            " VALUES (?, 1, 'running', ?, ?, ?)",
            (cid, json.dumps(spec), NOW, NOW),
        )
    return conn


def _state(conn: sqlite3.Connection, routing: Routing, campaign: str) -> tuple[str, str | None]:
    fanout = _Fanout(conn, routing, NOW)
    fanout.customer_message(
        f"evt_{campaign}", "reward.granted", {"campaign_id": campaign, "customer_id": "c1"}, {}
    )
    row = conn.execute(
        "SELECT state, consent FROM deliveries WHERE event_id = ?", (f"evt_{campaign}",)
    ).fetchone()
    return str(row[0]), row[1]


def test_a_custom_list_campaign_on_a_crm_list_checks_the_list_s_consent(tmp_path: Path) -> None:
    conn = _db(tmp_path)
    routing = Routing(channel_types={"mail": "smtp"}, list_consents={"crm-main": "crm_newsletter"})
    state, consent = _state(conn, routing, "vip")
    assert (state, consent) == ("skipped", "crm_newsletter")  # withdrawn for the list's consent
    # A list that no CRM connector fills keeps the campaign's own consent.
    _, consent = _state(conn, routing, "other")
    assert consent == "marketing_email"
    rows = conn.execute("SELECT last_error FROM deliveries ORDER BY id").fetchall()
    assert rows[0][0] == "no_consent"
    assert rows[1][0] != "no_consent"  # granted: the campaign's consent lets it through
