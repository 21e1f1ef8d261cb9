"""The store functions of notification campaigns (promod.notify.campaigns).

Selection of a run's due targets, the consent and ``not_within`` checks over a
batch of customers, the ``notification_sends`` they leave, the customer data a
message is rendered from, and the figures of ``campaign simulate`` and
``campaign report``; all against :class:`promod.store.seam.Transaction`::

    consenting = consenting(tx, ids, "loyalty_reminders")
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from promod.campaigns.segment_ast import Segment
from promod.campaigns.store_segments import compile_segment
from promod.store.seam import Row, Transaction

__all__ = ["consenting", "due_targets", "matching", "sent_since"]

_PLACEHOLDER = re.compile(r"\?")


def _named(sql: str, params: Sequence[Any], prefix: str) -> tuple[str, dict[str, Any]]:
    """The segment compiler's positional SQL with named parameters (``:prefix0`` ...)."""
    names: dict[str, Any] = {}

    def name(_: re.Match[str]) -> str:
        key = f"{prefix}{len(names)}"
        names[key] = params[len(names)]
        return f":{key}"

    text = _PLACEHOLDER.sub(name, sql)
    if len(names) != len(params):
        raise ValueError("segment SQL and its parameters do not match")
    return text, names


def segment_members(tx: Transaction, segment: Segment, now: float) -> list[str]:
    """Every customer a segment selects as of ``now``, sorted."""
    sql, params = _named(*compile_segment(segment, as_of=int(now)), prefix="s")
    return sorted(str(r[0]) for r in tx.fetch_all(sql, params))


def matching(tx: Transaction, segment: Segment, ids: Sequence[str], now: float) -> set[str]:
    """Which of ``ids`` the segment rule selects as of ``now``."""
    sql, params = _named(*compile_segment(segment, as_of=int(now)), prefix="s")
    rows = tx.fetch_all(
        f"SELECT m.customer_id FROM ({sql}) AS m"
        f" WHERE {tx.dialect.in_array('m.customer_id', 'ids')}",
        {**params, "ids": tx.dialect.array(ids)},
    )
    return {str(r[0]) for r in rows}


def due_targets(tx: Transaction, run_id: int, now: float, limit: int) -> list[Row]:
    """``(customer_id, rank)`` of the run's pending targets due at ``now``, in order."""
    return tx.fetch_all(
        "SELECT customer_id, rank FROM run_targets WHERE run_id = :run AND status = 'pending'"
        " AND due_at <= :now ORDER BY due_at, rank LIMIT :limit",
        {"run": run_id, "now": now, "limit": limit},
    )


def consenting(tx: Transaction, ids: Sequence[str], consent: str) -> set[str]:
    """Which of ``ids`` have granted ``consent`` (and not withdrawn it)."""
    rows = tx.fetch_all(
        "SELECT customer_id FROM customer_consents WHERE consent = :consent AND granted = 1"
        f" AND {tx.dialect.in_array('customer_id', 'ids')}",
        {"consent": consent, "ids": tx.dialect.array(ids)},
    )
    return {str(r[0]) for r in rows}


def sent_since(tx: Transaction, campaign_id: str, ids: Sequence[str], since: float) -> set[str]:
    """Which of ``ids`` the campaign selected for a message after ``since``."""
    rows = tx.fetch_all(
        "SELECT customer_id FROM notification_sends WHERE campaign_id = :campaign"
        f" AND sent_at > :since AND {tx.dialect.in_array('customer_id', 'ids')}",
        {"campaign": campaign_id, "since": since, "ids": tx.dialect.array(ids)},
    )
    return {str(r[0]) for r in rows}


def decide_targets(
    tx: Transaction, run_id: int, decisions: Iterable[tuple[int, str, str | None]], now: float
) -> None:
    """Set each target's outcome: ``[(rank, status, reason)]``."""
    tx.executemany(
        "UPDATE run_targets SET status = :status, reason = :reason, decided_at = :now"
        " WHERE run_id = :run AND rank = :rank",
        [
            {"status": status, "reason": reason, "now": now, "run": run_id, "rank": rank}
            for rank, status, reason in decisions
        ],
    )


def record_sends(
    tx: Transaction, campaign_id: str, run_id: int, ids: Iterable[str], now: float
) -> None:
    tx.executemany(
        tx.dialect.upsert(
            "notification_sends",
            ("campaign_id", "customer_id", "run_id", "sent_at"),
            ("campaign_id", "customer_id"),
            {"run_id": "excluded.run_id", "sent_at": "excluded.sent_at"},
        ),
        [
            {"campaign_id": campaign_id, "customer_id": cid, "run_id": run_id, "sent_at": now}
            for cid in ids
        ],
    )


# --------------------------------------------------------------------------- message context


def customer_row(tx: Transaction, customer_id: str) -> Row | None:
    return tx.fetch_one(
        "SELECT id, email, timezone, attributes, created_at FROM customers WHERE id = :id",
        {"id": customer_id},
    )


def customer_tags(tx: Transaction, customer_id: str) -> list[str]:
    rows = tx.fetch_all(
        "SELECT tag FROM customer_tags WHERE customer_id = :id ORDER BY tag", {"id": customer_id}
    )
    return [str(r[0]) for r in rows]


def wallet_points(tx: Transaction, customer_id: str) -> int:
    return int(
        tx.fetch_value(
            "SELECT points FROM wallet_balances WHERE customer_id = :id", {"id": customer_id}, 0
        )
    )


def customer_grants(tx: Transaction, customer_id: str, limit: int = 50) -> list[Row]:
    """The customer's latest grants (not failed), newest first."""
    return tx.fetch_all(
        "SELECT campaign_id, provider, state, amount_minor, value_minor, currency, code,"
        " created_at FROM grants WHERE customer_id = :id AND state <> 'failed'"
        " ORDER BY created_at DESC, id DESC LIMIT :limit",
        {"id": customer_id, "limit": limit},
    )


def attributes(value: Any) -> dict[str, Any]:
    try:
        data = json.loads(value) if isinstance(value, str) else {}
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- figures


def consent_count(tx: Transaction, ids: Sequence[str], consent: str) -> int:
    return len(consenting(tx, ids, consent))


def target_figures(tx: Transaction, campaign_id: str) -> list[Row]:
    """Per run: its state and times, and its targets by status and reason."""
    return tx.fetch_all(
        "SELECT r.id, r.state, r.started_at, r.finished_at, t.status, t.reason, count(*)"
        " FROM runs r JOIN run_targets t ON t.run_id = r.id WHERE r.campaign_id = :campaign"
        " GROUP BY r.id, r.state, r.started_at, r.finished_at, t.status, t.reason"
        " ORDER BY r.id",
        {"campaign": campaign_id},
    )


def delivery_figures(tx: Transaction, campaign_id: str) -> list[Row]:
    """The campaign's customer messages by state and reason."""
    return tx.fetch_all(
        "SELECT state, CASE WHEN state = 'skipped' THEN last_error END, count(*)"
        " FROM deliveries WHERE campaign_id = :campaign AND kind = 'message'"
        " AND type = 'notification.due'"
        " GROUP BY state, CASE WHEN state = 'skipped' THEN last_error END",
        {"campaign": campaign_id},
    )
