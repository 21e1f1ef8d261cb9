"""CRM sync in the database: runs, staged records, the apply, suppressions and responses.

Every function takes a plain ``sqlite3`` connection inside the caller's transaction
(``Database.run_sync``) and never commits. A run stages its records in ``crm_staged``
over many transactions; :func:`apply_run` moves them, in one transaction, into the
customers, the list's consent, ``crm_entities`` and a new version of the list
(through :mod:`promod.lists.store`), so readers see the old list or the new one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from promod.clock import utc_iso
from promod.crm.connector import ResponseRecord, SuppressionRecord
from promod.crm.records import CrmRecord
from promod.lists.store import apply_version, begin_version

__all__ = [
    "MAX_ERRORS",
    "apply_run",
    "begin_run",
    "collect_responses",
    "discard_run",
    "fail_interrupted",
    "finish_run",
    "get_run",
    "held_run",
    "last_runs",
    "mark_responses_exported",
    "mark_suppressions_sent",
    "metrics_rows",
    "pending_responses",
    "pending_suppressions",
    "plan_run",
    "prune_responses",
    "runs",
    "stage_records",
    "update_run",
]

MAX_ERRORS = 100

_RUN_COLUMNS = (
    "id, connector, list, consent, trigger, state, exported, fetched, accepted, invalid,"
    " suppressed, reconsented, members, added, removed, errors, error, version, started_at,"
    " finished_at"
)

# A staged record the list must not take: its address is suppressed and the CRM has
# no newer opt-in than the suppression (a later opted_in_at, or another opt_in_id
# than the one promod knew before the suppression), and for an unsubscription the
# consent was not granted again in promod since.
_SUPPRESSED = """
EXISTS (SELECT 1 FROM suppressions p WHERE p.address = s.email
    AND NOT (coalesce(s.opted_in_at, 0) > p.created_at)
    AND NOT EXISTS (SELECT 1 FROM crm_entities e WHERE e.connector = :connector
        AND e.customer_id = s.customer_id AND e.opt_in_id <> s.opt_in_id
        AND e.seen_at <= p.created_at)
    AND NOT (p.reason = 'unsubscribed' AND EXISTS (SELECT 1 FROM customer_consents cc
        WHERE cc.customer_id = s.customer_id AND cc.consent = :consent AND cc.granted = 1
        AND cc.updated_at > strftime('%Y-%m-%dT%H:%M:%SZ', p.created_at, 'unixepoch'))))
"""


def _run_dict(row: Sequence[Any]) -> dict[str, Any]:
    keys = [k.strip() for k in _RUN_COLUMNS.split(",")]
    run = dict(zip(keys, row, strict=True))
    run["errors"] = json.loads(run["errors"])
    if run["finished_at"] is not None:
        run["duration"] = round(float(run["finished_at"]) - float(run["started_at"]), 3)
    return run


def fail_interrupted(conn: sqlite3.Connection, *, now: float) -> list[str]:
    """Runs left ``running`` by a killed daemon: failed, staged rows dropped; their connectors."""
    rows = conn.execute("SELECT id, connector FROM crm_runs WHERE state = 'running'").fetchall()
    for run_id, _ in rows:
        conn.execute("DELETE FROM crm_staged WHERE run_id = ?", (run_id,))
        conn.execute(
            "UPDATE crm_runs SET state = 'failed', error = 'interrupted (the daemon stopped)',"
            " finished_at = ? WHERE id = ?",
            (now, run_id),
        )
    return sorted({str(r[1]) for r in rows})


def begin_run(
    conn: sqlite3.Connection,
    connector: str,
    list_name: str,
    consent: str,
    *,
    trigger: str,
    now: float,
) -> int:
    cursor = conn.execute(
        "INSERT INTO crm_runs (connector, list, consent, trigger, state, started_at)"
        " VALUES (?, ?, ?, ?, 'running', ?)",
        (connector, list_name, consent, trigger, now),
    )
    return int(cursor.lastrowid or 0)


def update_run(conn: sqlite3.Connection, run_id: int, **fields: Any) -> None:
    if "errors" in fields:
        fields["errors"] = json.dumps(fields["errors"][:MAX_ERRORS])
    sets = ", ".join(f"{key} = ?" for key in fields)
    conn.execute(f"UPDATE crm_runs SET {sets} WHERE id = ?", (*fields.values(), run_id))


def finish_run(
    conn: sqlite3.Connection, run_id: int, state: str, *, now: float, error: str | None = None
) -> None:
    if state in ("failed", "discarded"):
        conn.execute("DELETE FROM crm_staged WHERE run_id = ?", (run_id,))
    conn.execute(
        "UPDATE crm_runs SET state = ?, error = coalesce(?, error), finished_at = ? WHERE id = ?",
        (state, error, now, run_id),
    )


def stage_records(conn: sqlite3.Connection, run_id: int, records: Iterable[CrmRecord]) -> None:
    """Stage records of a run; a customer given twice keeps its last record."""
    conn.executemany(
        "INSERT OR REPLACE INTO crm_staged (run_id, customer_id, email, timezone, attributes,"
        " entity_type, entity_id, opt_in_id, opted_in_at, description, media_type)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (r.row(run_id) for r in records),
    )


def _current(conn: sqlite3.Connection, list_name: str) -> tuple[int | None, int | None]:
    row = conn.execute("SELECT id, version FROM lists WHERE name = ?", (list_name,)).fetchone()
    if row is None or row[1] is None:
        return None, None
    return int(row[0]), int(row[1])


def plan_run(
    conn: sqlite3.Connection, run_id: int, connector: str, list_name: str, consent: str
) -> dict[str, int]:
    """What applying the run would do: members, added, removed, suppressed, before."""
    params = {"run": run_id, "connector": connector, "consent": consent}
    conn.execute("DROP TABLE IF EXISTS temp.crm_keep")
    conn.execute("CREATE TEMP TABLE crm_keep (customer_id TEXT PRIMARY KEY) WITHOUT ROWID")
    conn.execute(
        "INSERT INTO temp.crm_keep SELECT s.customer_id FROM crm_staged s"
        f" WHERE s.run_id = :run AND NOT {_SUPPRESSED}",
        params,
    )
    staged = int(
        conn.execute("SELECT count(*) FROM crm_staged WHERE run_id = ?", (run_id,)).fetchone()[0]
    )
    members = int(conn.execute("SELECT count(*) FROM temp.crm_keep").fetchone()[0])
    list_id, version = _current(conn, list_name)
    if version is None:
        before, added, removed = 0, members, 0
    else:
        before = int(
            conn.execute(
                "SELECT count(*) FROM list_members WHERE list_id = ? AND version = ?",
                (list_id, version),
            ).fetchone()[0]
        )
        kept = int(
            conn.execute(
                "SELECT count(*) FROM list_members m JOIN temp.crm_keep k"
                " ON k.customer_id = m.customer_id WHERE m.list_id = ? AND m.version = ?",
                (list_id, version),
            ).fetchone()[0]
        )
        added, removed = members - kept, before - kept
    return {
        "members": members,
        "added": added,
        "removed": removed,
        "suppressed": staged - members,
        "before": before,
    }


def apply_run(
    conn: sqlite3.Connection,
    run_id: int,
    connector: str,
    list_name: str,
    consent: str,
    *,
    now: float,
    plan: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Apply a staged run in the caller's one transaction; the list's summary.

    ``plan`` is :func:`plan_run`'s answer when it was just computed in this
    transaction (its members are still in ``temp.crm_keep``).
    """
    if plan is None:
        plan = plan_run(conn, run_id, connector, list_name, consent)
    stamp = utc_iso(now)
    source = f"crm:{connector}"
    keep = (
        " FROM crm_staged s JOIN temp.crm_keep k ON k.customer_id = s.customer_id"
        " WHERE s.run_id = ?"
    )
    # A suppression the CRM answered with a newer opt-in is lifted.
    reconsented = conn.execute(
        "DELETE FROM suppressions WHERE address IN (SELECT s.email" + keep + ")", (run_id,)
    ).rowcount
    conn.execute(
        "INSERT INTO customers (id, email, timezone, attributes, created_at, updated_at)"
        " SELECT s.customer_id, s.email, s.timezone, s.attributes, ?, ?"
        + keep
        + " ON CONFLICT (id) DO UPDATE SET email = excluded.email,"
        " timezone = coalesce(excluded.timezone, timezone),"
        " attributes = json_patch(attributes, excluded.attributes),"
        " updated_at = excluded.updated_at",
        (stamp, stamp, run_id),
    )
    conn.execute(
        "INSERT INTO customer_consents (customer_id, consent, granted, updated_at, source)"
        " SELECT s.customer_id, ?, 1, ?, ?"
        + keep
        + " ON CONFLICT (customer_id, consent) DO UPDATE SET"
        " updated_at = CASE WHEN granted = 1 THEN updated_at ELSE excluded.updated_at END,"
        " granted = 1, source = excluded.source",
        (consent, stamp, source, run_id),
    )
    conn.execute(
        "INSERT OR REPLACE INTO crm_entities (connector, customer_id, email, entity_type,"
        " entity_id, opt_in_id, opted_in_at, description, media_type, seen_at)"
        " SELECT ?, s.customer_id, s.email, s.entity_type, s.entity_id, s.opt_in_id,"
        " s.opted_in_at, s.description, s.media_type, ?" + keep,
        (connector, now, run_id),
    )
    # Suppressed records still name their entity, for the exports (never their opt-in).
    conn.execute(
        "INSERT OR IGNORE INTO crm_entities (connector, customer_id, email, entity_type,"
        " entity_id, opt_in_id, opted_in_at, description, media_type, seen_at)"
        " SELECT ?, s.customer_id, s.email, s.entity_type, s.entity_id, s.opt_in_id,"
        " s.opted_in_at, s.description, s.media_type, ? FROM crm_staged s WHERE s.run_id = ?"
        " AND s.customer_id NOT IN (SELECT customer_id FROM temp.crm_keep)",
        (connector, now, run_id),
    )
    staged = begin_version(conn, list_name, source=source, now=now)
    conn.execute(
        "INSERT INTO list_members (list_id, version, customer_id)"
        " SELECT ?, ?, customer_id FROM temp.crm_keep",
        (staged.list_id, staged.version),
    )
    summary = apply_version(conn, staged, mode="replace", now=now)
    conn.execute("DELETE FROM crm_staged WHERE run_id = ?", (run_id,))
    conn.execute("DROP TABLE temp.crm_keep")
    update_run(
        conn,
        run_id,
        members=plan["members"],
        added=plan["added"],
        removed=plan["removed"],
        suppressed=plan["suppressed"],
        reconsented=reconsented,
        version=int(summary["version"]),
    )
    finish_run(conn, run_id, "applied", now=now)
    return {**summary, "suppressed": plan["suppressed"], "reconsented": reconsented}


def discard_run(conn: sqlite3.Connection, run_id: int, *, now: float) -> None:
    finish_run(conn, run_id, "discarded", now=now)


def held_run(conn: sqlite3.Connection, connector: str) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM crm_runs WHERE connector = ? AND state = 'held'"
        " ORDER BY id DESC LIMIT 1",
        (connector,),
    ).fetchone()
    return None if row is None else _run_dict(row)


def get_run(conn: sqlite3.Connection, run_id: int) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM crm_runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else _run_dict(row)


def runs(conn: sqlite3.Connection, connector: str, *, limit: int = 20) -> list[dict[str, Any]]:
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM crm_runs WHERE connector = ? ORDER BY id DESC LIMIT ?",
        (connector, limit),
    ).fetchall()
    return [_run_dict(r) for r in rows]


def last_runs(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Each connector's latest run, and its latest applied one (``last_success``)."""
    found: dict[str, dict[str, Any]] = {}
    for row in conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM crm_runs WHERE id IN"
        " (SELECT max(id) FROM crm_runs GROUP BY connector)"
    ):
        run = _run_dict(row)
        found[run["connector"]] = {"last_run": run}
    for connector, at in conn.execute(
        "SELECT connector, max(finished_at) FROM crm_runs WHERE state = 'applied'"
        " GROUP BY connector"
    ):
        found.setdefault(str(connector), {})["last_success"] = float(at)
    return found


def list_size(conn: sqlite3.Connection, list_name: str) -> int | None:
    list_id, version = _current(conn, list_name)
    if version is None:
        return None
    return int(
        conn.execute(
            "SELECT count(*) FROM list_members WHERE list_id = ? AND version = ?",
            (list_id, version),
        ).fetchone()[0]
    )


def metrics_rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """(connector, last success time or None, fetched, members, invalid, suppressed)."""
    return conn.execute(
        "SELECT r.connector, (SELECT max(finished_at) FROM crm_runs a WHERE"
        " a.connector = r.connector AND a.state = 'applied'), r.fetched, r.members,"
        " r.invalid, r.suppressed FROM crm_runs r WHERE r.id IN (SELECT max(id) FROM"
        " crm_runs WHERE state = 'applied' GROUP BY connector)"
    ).fetchall()


# -- suppressions out ---------------------------------------------------------


def pending_suppressions(
    conn: sqlite3.Connection, connector: str, consent: str
) -> tuple[list[SuppressionRecord], int]:
    """Suppressions not yet sent to this connector, with their entity; and how many have none."""
    rows = conn.execute(
        "SELECT p.reason, p.address, coalesce(p.customer_id, e.customer_id), e.entity_type,"
        " e.entity_id, p.created_at FROM suppressions p"
        " LEFT JOIN crm_entities e ON e.connector = ?"
        " AND (e.customer_id = p.customer_id OR e.email = p.address)"
        " WHERE p.reason IN ('bounced', 'unsubscribed', 'complained')"
        " AND NOT EXISTS (SELECT 1 FROM crm_suppressions_sent x WHERE x.connector = ?"
        " AND x.address = p.address AND x.created_at >= p.created_at)"
        " ORDER BY p.created_at, p.address",
        (connector, connector),
    ).fetchall()
    records, seen, unmatched = [], set(), 0
    for reason, address, customer_id, entity_type, entity_id, created_at in rows:
        if address in seen:
            continue
        seen.add(address)
        if entity_id is None:
            unmatched += 1
            continue
        records.append(
            SuppressionRecord(
                reason=str(reason),
                email=str(address),
                customer_id=customer_id,
                entity_type=str(entity_type),
                entity_id=str(entity_id),
                consent=consent,
                at=float(created_at),
            )
        )
    return records, unmatched


def mark_suppressions_sent(
    conn: sqlite3.Connection, connector: str, records: Sequence[SuppressionRecord], *, now: float
) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO crm_suppressions_sent (connector, address, created_at, sent_at)"
        " VALUES (?, ?, ?, ?)",
        [(connector, r.email, r.at, now) for r in records],
    )


# -- responses back ---------------------------------------------------------

_RESPONSE_SOURCES = """
SELECT 'delivery:' || d.id AS key, d.customer_id AS customer_id,
       d.campaign_id AS campaign_id, 'delivered' AS response, d.sent_at AS at
  FROM deliveries d WHERE d.kind = 'message' AND d.state = 'sent' AND d.sent_at >= :since
UNION ALL
SELECT 'suppression:' || p.address || ':' || p.created_at, p.customer_id, NULL,
       CASE p.reason WHEN 'unsubscribed' THEN 'unsubscribed'
            WHEN 'bounced' THEN CASE WHEN p.detail LIKE '%soft%' THEN 'bounced_soft'
                                     ELSE 'bounced_hard' END
            ELSE p.reason END, p.created_at
  FROM suppressions p WHERE p.reason IN ('bounced', 'unsubscribed')
   AND p.customer_id IS NOT NULL AND p.created_at >= :since
UNION ALL
SELECT 'grant:' || g.id, g.customer_id, g.campaign_id, 'granted', g.issued_at
  FROM grants g WHERE g.state = 'issued' AND g.issued_at >= :since
UNION ALL
SELECT 'coupon:' || r.grant_id, r.customer_id, r.campaign_id, 'redeemed', r.redeemed_at
  FROM coupon_redemptions r WHERE r.redeemed_at >= :since
"""


def collect_responses(
    conn: sqlite3.Connection, connector: str, *, since: float, now: float
) -> dict[str, int]:
    """Record new responses of this connector's entities; count those with no entity."""
    params = {"since": since, "connector": connector, "now": now}
    before = conn.total_changes
    conn.execute(
        "INSERT OR IGNORE INTO crm_responses (connector, source_key, customer_id, entity_type,"
        " entity_id, campaign_id, response, at, recorded_at)"
        " SELECT :connector, src.key, src.customer_id, e.entity_type, e.entity_id,"
        " src.campaign_id, src.response, src.at, :now FROM"
        f" ({_RESPONSE_SOURCES}) AS src"
        " JOIN crm_entities e ON e.connector = :connector AND e.customer_id = src.customer_id",
        params,
    )
    recorded = conn.total_changes - before
    unmatched = int(
        conn.execute(
            f"SELECT count(*) FROM ({_RESPONSE_SOURCES}) AS src WHERE NOT EXISTS"
            " (SELECT 1 FROM crm_entities e WHERE e.connector = :connector"
            " AND e.customer_id = src.customer_id)",
            params,
        ).fetchone()[0]
    )
    return {"recorded": recorded, "unmatched": unmatched}


def pending_responses(
    conn: sqlite3.Connection, connector: str, *, limit: int = 10_000
) -> list[tuple[int, ResponseRecord]]:
    rows = conn.execute(
        "SELECT id, response, customer_id, entity_type, entity_id, campaign_id, at"
        " FROM crm_responses WHERE connector = ? AND exported_at IS NULL ORDER BY id LIMIT ?",
        (connector, limit),
    ).fetchall()
    return [
        (
            int(r[0]),
            ResponseRecord(
                response=str(r[1]),
                customer_id=str(r[2]),
                entity_type=str(r[3]),
                entity_id=str(r[4]),
                campaign_id=r[5],
                at=float(r[6]),
            ),
        )
        for r in rows
    ]


def mark_responses_exported(conn: sqlite3.Connection, ids: Sequence[int], *, now: float) -> None:
    conn.executemany(
        "UPDATE crm_responses SET exported_at = ? WHERE id = ?", [(now, i) for i in ids]
    )


def prune_responses(conn: sqlite3.Connection, connector: str, *, before: float) -> int:
    """Drop responses older than the retention; how many went."""
    return conn.execute(
        "DELETE FROM crm_responses WHERE connector = ? AND at < ?", (connector, before)
    ).rowcount


def response_counts(conn: sqlite3.Connection, connector: str) -> dict[str, int]:
    row = conn.execute(
        "SELECT count(*), count(exported_at) FROM crm_responses WHERE connector = ?",
        (connector,),
    ).fetchone()
    return {"kept": int(row[0]), "exported": int(row[1])}
