"""Notification campaigns in process: spec rules, template checks, strict opt-in, migration.

A real SQLite database for the store parts: a consent withdrawn after a customer
was selected (before fan-out, or after it but before the claim that hands the
message to the channel) leaves that customer without a message.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from promod.campaigns.spec import SpecError, load_spec, parse_spec, spec_warnings
from promod.notify.campaigns import EVENT_TYPE, notification_issues
from promod.notify.consents import change_consents, consents_view
from promod.notify.deliveries import Routing, claim_due_sync, fanout_sync
from promod.notify.outbox import enqueue_sync
from promod.notify.render import RenderError, render, sample_context, template_issues
from promod.notify.unsubscribe import (
    InvalidToken,
    make_preferences_token,
    make_unsubscribe_token,
    verify_preferences_token,
    verify_unsubscribe_token,
)
from promod.store.database import Database, migrate_sync
from tests.notify.conftest import add_campaign, add_customer

MIGRATIONS = Path(__file__).resolve().parents[2] / "promod" / "store" / "migrations"

SPEC = """
id = "loyalty"
name = "Loyalty"
kind = "notification"
[schedule]
start = "now"
recurring = "daily 09:00"
[segment]
tag = "revenue_incomplete_profile"
[notify]
channel = "mail"
consent = "loyalty_reminders"
not_within = "14d"
text = "{% for s in missing_steps %}{{ s.text }}{% endfor %}"
[[notify.steps]]
id = "complete_profile"
text = "Complete your profile"
done = { attr = "profile_complete", eq = true }
"""


def _issues(text: str) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        load_spec(text, "toml")
    return [(i.path, i.message) for i in caught.value.issues]


def test_a_notification_spec_has_no_reward_a_consent_and_round_trips() -> None:
    spec = load_spec(SPEC, "toml")
    assert spec.kind == "notification"
    assert spec.notify is not None
    assert spec.notify.not_within == 14 * 86400
    assert [s.id for s in spec.notify.steps] == ["complete_profile"]
    data = spec.to_dict()
    assert "reward" not in data
    assert data["notify"]["not_within"] == "14d"
    assert parse_spec(data) == spec
    assert spec.summary()["reward"] == "none (a notification campaign)"
    assert spec_warnings(spec) == []  # no spend, so no cap or clearance warnings


def test_notification_specs_are_refused_with_the_key_that_is_wrong() -> None:
    with_reward = SPEC + '\n[reward]\nprovider = "wallet_points"\namount = "5"\n'
    assert ("reward", "a notification campaign grants nothing: remove [reward]") in _issues(
        with_reward
    )
    no_consent = SPEC.replace('consent = "loyalty_reminders"\n', "")
    assert [p for p, _ in _issues(no_consent)] == ["notify.consent"]
    bad_window = SPEC.replace('"14d"', '"soon"')
    assert [p for p, _ in _issues(bad_window)] == ["notify.not_within"]
    bad_step = SPEC.replace("attr = ", "attribute = ")
    assert any(p.startswith("notify.steps[0].done") for p, _ in _issues(bad_step))
    # not_within and steps belong to notification campaigns only.
    other = SPEC.replace('kind = "notification"', 'kind = "past_behavior"')
    other += '\n[reward]\nprovider = "wallet_points"\namount = "5"\n'
    paths = [p for p, _ in _issues(other)]
    assert "notify.not_within" in paths
    assert "notify.steps" in paths


def test_templates_refuse_unknown_variables_and_show_the_line_of_an_error() -> None:
    [unknown] = template_issues("Hi {{ customre.id }}", html=False)
    assert unknown.startswith("unknown variable 'customre'")
    [syntax] = template_issues("line one\n{% for s in steps %}\nno end", html=False)
    assert syntax.startswith("line 3:")
    [runtime] = template_issues("ok\n{{ customer.nickname }}", html=False)
    assert runtime.startswith("line 2:") and "nickname" in runtime
    # The sandbox refuses Python internals.
    assert template_issues("{{ customer.__class__.__mro__ }}", html=False)
    assert (
        template_issues("{{ customer.attributes.anything }} {{ tags | join(',') }}", html=True)
        == []
    )
    with pytest.raises(RenderError, match="line 2"):
        render("a\n{{ wallet.points.nope }}", sample_context())
    assert render("{{ customer.email }}", {"customer": {"email": "<x>"}}, html=True) == "&lt;x&gt;"


def test_campaign_apply_checks_inline_texts_and_template_files(tmp_path: Path) -> None:
    spec = load_spec(SPEC.replace("missing_steps", "missing"), "toml")
    [issue] = notification_issues(spec, None)
    assert issue["path"] == "notify.text"
    assert "unknown variable 'missing'" in issue["message"]

    (tmp_path / "loyalty.toml").write_text(
        'subject = "Steps"\ntext = """\nHello\n{% if x %}\n"""\n'
    )
    from_file = SPEC.replace(
        'text = "{% for s in missing_steps %}{{ s.text }}{% endfor %}"', 'template = "loyalty"'
    )
    [issue] = notification_issues(load_spec(from_file, "toml"), tmp_path)
    assert issue["path"] == "notify.text"
    assert issue["message"].startswith("template loyalty: line ")
    [missing] = notification_issues(load_spec(from_file, "toml"), tmp_path / "none")
    assert missing["path"] == "notify.template"


async def _setup(tmp_path: Path) -> Database:
    db = await Database.open(tmp_path / "promod.db")
    spec = load_spec(SPEC, "toml").to_dict()
    await add_campaign(db, "loyalty", notify=spec["notify"])
    await db.execute(
        "UPDATE campaigns SET spec = json_set(spec, '$.kind', 'notification') WHERE id = 'loyalty'"
    )
    await add_customer(db, "c1", "c1@example.org", {"loyalty_reminders": True})
    return db


def _routing() -> Routing:
    return Routing(channel_types={"mail": "smtp"}, public_url="https://promo.example.org")


def _event(tx: Any) -> None:
    payload = {"campaign_id": "loyalty", "run_id": None, "customer_id": "c1", "done_steps": []}
    enqueue_sync(tx, EVENT_TYPE, payload, now=time.time(), event_id="ntf:loyalty:1:c1")


@pytest.mark.anyio
async def test_an_opt_out_after_selection_is_caught_at_fan_out(tmp_path: Path) -> None:
    db = await _setup(tmp_path)
    try:
        await db.run(_event)
        await db.run(
            lambda tx: change_consents(
                tx, "c1", {"loyalty_reminders": False}, source="page", now=time.time()
            )
        )
        await db.run(lambda tx: fanout_sync(tx, _routing(), now=time.time()))
        row = await db.fetchone("SELECT state, last_error FROM deliveries")
        assert row is not None and tuple(row) == ("skipped", "no_consent")
    finally:
        await db.close()


@pytest.mark.anyio
async def test_an_opt_out_after_fan_out_is_caught_in_the_claim_that_sends(tmp_path: Path) -> None:
    db = await _setup(tmp_path)
    try:
        await db.run(_event)
        await db.run(lambda tx: fanout_sync(tx, _routing(), now=time.time()))
        row = await db.fetchone("SELECT state, message FROM deliveries")
        assert row is not None and row[0] == "pending"
        assert "Complete your profile" in row[1]
        assert "/v1/preferences?token=" in row[1]
        await db.run(
            lambda tx: change_consents(
                tx, "c1", {"loyalty_reminders": False}, source="api", now=time.time()
            )
        )
        claimed = await db.run(lambda tx: claim_due_sync(tx, "mail", now=time.time() + 1, limit=10))
        assert claimed == []
        row = await db.fetchone("SELECT state, last_error FROM deliveries")
        assert row is not None and tuple(row) == ("skipped", "no_consent")
        view = await db.run(lambda tx: consents_view(tx, "c1"), write=False)
        assert view is not None
        assert [(h["granted"], h["source"]) for h in view["history"]] == [
            (False, "api"),
            (True, "import"),
        ]
    finally:
        await db.close()


def test_migration_0011_keeps_the_existing_consents_as_the_first_history(tmp_path: Path) -> None:
    older = tmp_path / "older"
    older.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if int(path.name[:4]) < 11:
            shutil.copy(path, older / path.name)
    db = tmp_path / "promod.db"
    migrate_sync(db, older)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO customers (id, email, attributes, created_at, updated_at)"
            " VALUES ('c1', 'c1@example.org', '{}', 'x', 'x')"
        )
        conn.execute(
            "INSERT INTO customer_consents VALUES"
            " ('c1', 'marketing_email', 1, '2026-01-01T00:00:00Z', 'import')"
        )
    assert 11 in migrate_sync(db, MIGRATIONS)
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT consent, granted, source, changed_at FROM consent_history"
        ).fetchall()
        assert rows == [("marketing_email", 1, "import", "2026-01-01T00:00:00Z")]
        # A write that changes nothing adds nothing; a change adds one entry.
        conn.execute("UPDATE customer_consents SET source = 'crm:main' WHERE customer_id = 'c1'")
        conn.execute(
            "UPDATE customer_consents SET granted = 0, source = 'page',"
            " updated_at = '2026-02-01T00:00:00Z' WHERE customer_id = 'c1'"
        )
        rows = conn.execute("SELECT granted, source FROM consent_history ORDER BY id").fetchall()
    assert rows == [(1, "import"), (0, "page")]


def test_a_preference_link_and_an_unsubscribe_link_never_pass_for_each_other() -> None:
    key = bytes(range(32))
    preferences = make_preferences_token(key, "c42")
    unsubscribe = make_unsubscribe_token(key, "c42", None)
    assert verify_preferences_token(key, preferences) == "c42"
    with pytest.raises(InvalidToken):
        verify_preferences_token(key, unsubscribe)
    with pytest.raises(InvalidToken):
        verify_unsubscribe_token(key, preferences)
    with pytest.raises(InvalidToken):
        verify_preferences_token(bytes(32), preferences)
