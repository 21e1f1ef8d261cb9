"""The ledger's store functions: every statement on grants, cap counters and the kill switch.

Written against the seam (:class:`promod.store.seam.Transaction`, docs/architecture.md
"The store"): the ledger's modules and its actor call these named functions inside
``await db.run(fn)`` and hold no SQL of their own. Customer ids are text here as at
every edge; the grant path's layout (migration ``0012_grant_path``) keeps one
customer-keyed index on ``grants`` (``grants_once``: customer, campaign, run), from
which the per-customer cap, the frequency cap and the uniqueness of a grant per
(campaign, run, customer) are all read::

    engaged = await db.run(killswitch_engaged, write=False)
    rows = await db.run(lambda tx: due_targets(tx, run_id=7, now=now, limit=1000))
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from promod.store.seam import Row, Transaction, TxLike, as_tx, legacy_connection

KILLSWITCH_KEY = "killswitch"

# Rows in one multi-row INSERT ... RETURNING: 15 parameters each, under SQLite's
# 32,766-parameter limit.
_INSERT_CHUNK = 2000


# -- bridging ---------------------------------------------------------------------


def as_transaction(handle: TxLike) -> Transaction:
    """``handle`` as a :class:`Transaction`: callers not yet behind the seam pass the
    backend's connection, which is wrapped."""
    return as_tx(handle)


def backend_connection(handle: TxLike) -> Any:
    """The backend connection under ``handle``, for functions of other domains that
    still take one (they move behind the seam in their own modules)."""
    return legacy_connection(handle)


# -- the kill switch --------------------------------------------------------------


def killswitch_engaged(tx: Transaction) -> bool:
    return tx.fetch_one("SELECT 1 FROM meta WHERE key = :key", {"key": KILLSWITCH_KEY}) is not None


def killswitch_value(tx: Transaction) -> str | None:
    value = tx.fetch_value("SELECT value FROM meta WHERE key = :key", {"key": KILLSWITCH_KEY})
    return None if value is None else str(value)


def engage_killswitch(tx: Transaction, value: str) -> None:
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (:key, :value)",
        {"key": KILLSWITCH_KEY, "value": value},
    )


def release_killswitch(tx: Transaction) -> bool:
    return tx.execute("DELETE FROM meta WHERE key = :key", {"key": KILLSWITCH_KEY}) > 0


# -- cap counters -----------------------------------------------------------------


def counter_usage(tx: Transaction, scope: str, period: str) -> tuple[int, int, int] | None:
    """(count, spend, customers) of one ``cap_counters`` row, or None."""
    row = tx.fetch_one(
        "SELECT count, spend, customers FROM cap_counters WHERE scope = :scope"
        " AND period = :period",
        {"scope": scope, "period": period},
    )
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]))


def add_to_counters(tx: Transaction, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add each row's count, spend and customers to its counter (created at need) and
    set its limits; the table's CHECK constraints refuse a sum past a limit."""
    if not rows:
        return
    tx.executemany(
        tx.dialect.upsert(
            "cap_counters",
            [
                "scope",
                "period",
                "count",
                "spend",
                "customers",
                "max_count",
                "max_spend",
                "max_customers",
            ],
            ["scope", "period"],
            {
                "count": "cap_counters.count + excluded.count",
                "spend": "cap_counters.spend + excluded.spend",
                "customers": "cap_counters.customers + excluded.customers",
                "max_count": "excluded.max_count",
                "max_spend": "excluded.max_spend",
                "max_customers": "excluded.max_customers",
            },
        ),
        rows,
    )


def take_from_counters(
    tx: Transaction, scopes: Iterable[tuple[str, str]], value: int, first: bool
) -> None:
    """Give back one grant's reservation on the given counters (a failed issue)."""
    tx.executemany(
        "UPDATE cap_counters SET count = count - 1, spend = spend - :value,"
        " customers = customers - :first WHERE scope = :scope AND period = :period",
        [
            {"value": value, "first": 1 if first else 0, "scope": scope, "period": period}
            for scope, period in scopes
        ],
    )


def currencyless_scopes(tx: Transaction) -> list[str]:
    return [
        str(row[0])
        for row in tx.fetch_all(
            "SELECT DISTINCT scope FROM cap_counters WHERE scope LIKE 'provider:%'"
        )
    ]


def counted_grants(
    tx: Transaction, providers: Sequence[str]
) -> list[tuple[str, str, int, float, bool]]:
    """(provider, currency, value_minor, created_at, first) of every grant that counts
    against a policy budget of ``providers``; ``first``: the customer's first live grant
    of its campaign."""
    rows = tx.fetch_all(
        "SELECT g.provider, g.currency, g.value_minor, g.created_at,"
        " g.id = (SELECT min(f.id) FROM grants f WHERE f.customer_id = g.customer_id"
        "         AND f.campaign_id = g.campaign_id AND f.state != 'failed')"
        " FROM grants g WHERE g.state != 'failed' AND g.currency IS NOT NULL"
        f" AND {tx.dialect.in_array('g.provider', 'providers')}",
        {"providers": tx.dialect.array(providers)},
    )
    return [(str(r[0]), str(r[1]), int(r[2]), float(r[3]), bool(r[4])) for r in rows]


def replace_currencyless(tx: Transaction, totals: Mapping[tuple[str, str], Sequence[int]]) -> int:
    """Drop the ``provider:<name>`` counters, write ``totals`` in their place; how many
    rows were dropped."""
    removed = tx.execute("DELETE FROM cap_counters WHERE scope LIKE 'provider:%'")
    tx.executemany(
        tx.dialect.upsert(
            "cap_counters",
            ["scope", "period", "count", "spend", "customers"],
            ["scope", "period"],
            {
                "count": "excluded.count",
                "spend": "excluded.spend",
                "customers": "excluded.customers",
                "max_count": "NULL",
                "max_spend": "NULL",
                "max_customers": "NULL",
            },
        ),
        [
            {"scope": s, "period": p, "count": r[0], "spend": r[1], "customers": r[2]}
            for (s, p), r in sorted(totals.items())
        ],
    )
    return removed


# -- the grant batch --------------------------------------------------------------


def due_targets(tx: Transaction, run_id: int, now: float, limit: int) -> list[Row]:
    """(customer_id, rank) of the run's next due targets, in (due time, rank) order."""
    return tx.fetch_all(
        "SELECT customer_id, rank FROM run_targets WHERE run_id = :run AND status = 'pending'"
        " AND due_at <= :now ORDER BY due_at, rank LIMIT :limit",
        {"run": run_id, "now": now, "limit": limit},
    )


def grants_per_customer(tx: Transaction, campaign_id: str, ids: Sequence[str]) -> dict[str, int]:
    """Live grants so far of ``campaign_id`` per customer of ``ids`` (those with any)."""
    rows = tx.fetch_all(
        "SELECT g.customer_id, count(*) FROM grants g"
        f" WHERE {tx.dialect.in_array('g.customer_id', 'ids')}"
        " AND g.campaign_id = :campaign AND g.state != 'failed' GROUP BY g.customer_id",
        {"ids": tx.dialect.array(ids), "campaign": campaign_id},
    )
    return {str(r[0]): int(r[1]) for r in rows}


def grants_since(tx: Transaction, ids: Sequence[str], since: float) -> dict[str, int]:
    """Live grants of any campaign created at or after ``since``, per customer of ``ids``."""
    rows = tx.fetch_all(
        "SELECT g.customer_id, count(*) FROM grants g"
        f" WHERE {tx.dialect.in_array('g.customer_id', 'ids')}"
        " AND g.state != 'failed' AND g.created_at >= :since GROUP BY g.customer_id",
        {"ids": tx.dialect.array(ids), "since": since},
    )
    return {str(r[0]): int(r[1]) for r in rows}


def failed_in_run(tx: Transaction, run_id: int, provider: str, ids: Sequence[str]) -> set[str]:
    """Customers of ``ids`` with a failed grant of ``provider`` in the run."""
    rows = tx.fetch_all(
        "SELECT DISTINCT g.customer_id FROM grants g"
        f" WHERE {tx.dialect.in_array('g.customer_id', 'ids')}"
        " AND g.run_id = :run AND g.provider = :provider AND g.state = 'failed'",
        {"ids": tx.dialect.array(ids), "run": run_id, "provider": provider},
    )
    return {str(r[0]) for r in rows}


def reserved_on_counter(tx: Transaction, scope: str, period: str) -> bool:
    """Some grant still being issued (``reserved``) booked this counter."""
    rows = tx.fetch_all(
        "SELECT counters FROM grants WHERE state = 'reserved' AND counters IS NOT NULL"
    )
    wanted = [scope, period]
    return any(wanted in json.loads(str(r[0])) for r in rows)


def refuse_targets(
    tx: Transaction, run_id: int, now: float, refused: Iterable[tuple[int, str]]
) -> None:
    """Mark targets (by rank) refused with their reasons."""
    tx.executemany(
        "UPDATE run_targets SET status = 'refused', reason = :reason, decided_at = :now"
        " WHERE run_id = :run AND rank = :rank",
        [{"reason": reason, "now": now, "run": run_id, "rank": rank} for rank, reason in refused],
    )


def mark_granted(tx: Transaction, run_id: int, now: float, ranks: Sequence[int]) -> None:
    tx.execute(
        "UPDATE run_targets SET status = 'granted', reason = NULL, decided_at = :now"
        f" WHERE run_id = :run AND {tx.dialect.in_array('rank', 'ranks')}",
        {"now": now, "run": run_id, "ranks": tx.dialect.array(ranks)},
    )


GRANT_COLUMNS = (
    "campaign_id",
    "run_id",
    "customer_id",
    "provider",
    "amount_minor",
    "value_minor",
    "currency",
    "state",
    "day",
    "created_at",
    "issued_at",
    "next_attempt_at",
    "counters",
    "reference",
    "code",
)


def insert_grants(tx: Transaction, rows: Sequence[Sequence[Any]]) -> dict[str, int]:
    """Insert grant rows (values in ``GRANT_COLUMNS`` order, one run); their ids by
    customer id. The unique index ``grants_once`` refuses a second live grant of a
    customer in a run (:class:`~promod.store.seam.UniqueViolation`)."""
    ids: dict[str, int] = {}
    placeholders = "(" + ", ".join("?" for _ in GRANT_COLUMNS) + ")"
    columns = ", ".join(GRANT_COLUMNS)
    for start in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[start : start + _INSERT_CHUNK]
        flat = [value for row in chunk for value in row]
        returned = tx.fetch_all(
            f"INSERT INTO grants ({columns}) VALUES "
            + ", ".join(placeholders for _ in chunk)
            + " RETURNING id, customer_id",
            flat,
        )
        ids.update((str(r[1]), int(r[0])) for r in returned)
    return ids


def set_grant_rewards(
    tx: Transaction, updates: Iterable[tuple[str | None, str | None, float | None, int]]
) -> None:
    """(reference, code, expires_at, grant id): what a provider issued."""
    tx.executemany(
        "UPDATE grants SET reference = :reference, code = :code, expires_at = :expires"
        " WHERE id = :id",
        [{"reference": r, "code": c, "expires": e, "id": i} for r, c, e, i in updates],
    )


# -- the actor: runs, refusals ----------------------------------------------------


def active_runs(tx: Transaction) -> list[tuple[str, int]]:
    """(campaign, run) of every running campaign's open run, by campaign."""
    rows = tx.fetch_all(
        "SELECT c.id, r.id FROM campaigns c JOIN runs r ON r.campaign_id = c.id"
        " WHERE c.state = 'running' AND r.state IN ('pilot', 'running') ORDER BY c.id"
    )
    return [(str(r[0]), int(r[1])) for r in rows]


def refuse_undecided(tx: Transaction, run_id: int, reason: str, now: float) -> int:
    """Refuse every target of the run still pending or held."""
    return tx.execute(
        "UPDATE run_targets SET status = 'refused', reason = :reason, decided_at = :now"
        " WHERE run_id = :run AND status IN ('pending', 'held')",
        {"reason": reason, "now": now, "run": run_id},
    )


def run_state(tx: Transaction, run_id: int) -> str | None:
    value = tx.fetch_value("SELECT state FROM runs WHERE id = :run", {"run": run_id})
    return None if value is None else str(value)


def set_target(
    tx: Transaction,
    run_id: int,
    customer_id: str,
    status: str,
    reason: str | None,
    decided_at: float | None,
) -> None:
    tx.execute(
        "UPDATE run_targets SET status = :status, reason = :reason, decided_at = :decided"
        " WHERE run_id = :run AND customer_id = :customer",
        {
            "status": status,
            "reason": reason,
            "decided": decided_at,
            "run": run_id,
            "customer": customer_id,
        },
    )


def running_without_fallback(tx: Transaction, provider: str) -> list[str]:
    """Running campaigns whose main reward is ``provider`` and that have no fallback."""
    rows = tx.fetch_all("SELECT id, spec FROM campaigns WHERE state = 'running' ORDER BY id")
    out = []
    for row in rows:
        reward = json.loads(str(row[1])).get("reward") or {}
        if reward.get("provider") == provider and reward.get("fallback") is None:
            out.append(str(row[0]))
    return out


def circuit_paused(tx: Transaction) -> list[tuple[str, str]]:
    """(campaign, reason) of the campaigns paused for an open circuit."""
    rows = tx.fetch_all(
        "SELECT id, paused_reason FROM campaigns WHERE state = 'paused'"
        " AND paused_reason LIKE 'circuit_open:%'"
    )
    return [(str(r[0]), str(r[1])) for r in rows]


# -- grants of providers outside the database -------------------------------------


def reserved_due(tx: Transaction, now: float, blocked: Sequence[str], limit: int) -> list[Row]:
    """Reserved grants due for an attempt (not of ``blocked`` providers), oldest first:
    id, campaign_id, run_id, customer_id, provider, amount_minor, value_minor,
    currency, attempts and the campaign's spec."""
    return tx.fetch_all(
        "SELECT g.id, g.campaign_id, g.run_id, g.customer_id, g.provider, g.amount_minor,"
        " g.value_minor, g.currency, g.attempts, c.spec FROM grants g"
        " JOIN campaigns c ON c.id = g.campaign_id"
        " WHERE g.state = 'reserved' AND g.next_attempt_at <= :now"
        f" AND NOT {tx.dialect.in_array('g.provider', 'blocked')} ORDER BY g.id LIMIT :limit",
        {"now": now, "blocked": tx.dialect.array(blocked), "limit": limit},
    )


def hurry_reserved(tx: Transaction, now: float, providers: Sequence[str]) -> None:
    """Make the reserved grants of ``providers`` that wait for a later try due now."""
    tx.execute(
        "UPDATE grants SET next_attempt_at = :now WHERE state = 'reserved'"
        f" AND next_attempt_at > :now AND {tx.dialect.in_array('provider', 'providers')}",
        {"now": now, "providers": tx.dialect.array(providers)},
    )


def next_attempts(tx: Transaction) -> list[tuple[str, float]]:
    """Per provider with reserved grants, the earliest next attempt."""
    rows = tx.fetch_all(
        "SELECT provider, min(next_attempt_at) FROM grants WHERE state = 'reserved'"
        " GROUP BY provider"
    )
    return [(str(r[0]), float(r[1] or 0)) for r in rows]


def has_reserved(tx: Transaction, provider: str) -> bool:
    row = tx.fetch_one(
        "SELECT 1 FROM grants WHERE state = 'reserved' AND provider = :provider LIMIT 1",
        {"provider": provider},
    )
    return row is not None


def mark_issued(
    tx: Transaction,
    grant_id: int,
    now: float,
    attempts: int,
    reference: str | None,
    code: str | None,
    expires_at: float | None,
) -> bool:
    """A reserved grant was issued; False when it is no longer reserved."""
    return (
        tx.execute(
            "UPDATE grants SET state = 'issued', issued_at = :now, attempts = :attempts,"
            " reference = :reference, code = :code, expires_at = :expires, error = NULL,"
            " next_attempt_at = NULL WHERE id = :id AND state = 'reserved'",
            {
                "now": now,
                "attempts": attempts,
                "reference": reference,
                "code": code,
                "expires": expires_at,
                "id": grant_id,
            },
        )
        > 0
    )


def claim_attempt(tx: Transaction, grant_id: int, attempts: int) -> bool:
    """Count attempt number ``attempts``; False unless the grant is reserved with one
    fewer attempt counted."""
    return (
        tx.execute(
            "UPDATE grants SET attempts = :attempts WHERE id = :id AND state = 'reserved'"
            " AND attempts = :before",
            {"attempts": attempts, "id": grant_id, "before": attempts - 1},
        )
        > 0
    )


def schedule_retry(
    tx: Transaction, grant_id: int, attempts: int, next_attempt_at: float, error: str
) -> None:
    tx.execute(
        "UPDATE grants SET attempts = :attempts, next_attempt_at = :next, error = :error"
        " WHERE id = :id AND state = 'reserved'",
        {"attempts": attempts, "next": next_attempt_at, "error": error[:500], "id": grant_id},
    )


def untried_reserved(
    tx: Transaction, provider: str
) -> list[tuple[int, str, int, str, str, int, str | None]]:
    """Reserved grants of ``provider`` with no attempt counted: id, campaign_id, run_id,
    customer_id, provider, value_minor, currency."""
    rows = tx.fetch_all(
        "SELECT id, campaign_id, run_id, customer_id, provider, value_minor, currency"
        " FROM grants WHERE state = 'reserved' AND provider = :provider AND attempts = 0",
        {"provider": provider},
    )
    return [(int(r[0]), str(r[1]), int(r[2]), str(r[3]), str(r[4]), int(r[5]), r[6]) for r in rows]


def reserved_grant(tx: Transaction, grant_id: int) -> Row | None:
    """day, created_at, counters, value_minor of a grant that is reserved, or None."""
    return tx.fetch_one(
        "SELECT day, created_at, counters, value_minor FROM grants WHERE id = :id"
        " AND state = 'reserved'",
        {"id": grant_id},
    )


def fail_grant(tx: Transaction, grant_id: int, attempts: int, error: str) -> None:
    tx.execute(
        "UPDATE grants SET state = 'failed', attempts = :attempts, error = :error,"
        " next_attempt_at = NULL WHERE id = :id",
        {"attempts": attempts, "error": error[:500], "id": grant_id},
    )


def live_grants_of(tx: Transaction, campaign_id: str, customer_id: str) -> int:
    """Grants of the campaign to the customer that are not failed."""
    return int(
        tx.fetch_value(
            "SELECT count(*) FROM grants WHERE customer_id = :customer"
            " AND campaign_id = :campaign AND state != 'failed'",
            {"customer": customer_id, "campaign": campaign_id},
            0,
        )
    )
