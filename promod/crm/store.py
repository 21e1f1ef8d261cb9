"""CRM sync in the database: runs, staged records, the apply, suppressions and responses.

Every function takes the caller's :class:`~promod.store.seam.Transaction`
(``Database.run``) and never commits. A run's records stream into a temporary
table of the writer's session, ``crm_stage_RUN``, over many transactions, appended
in arrival order under an integer ``seq``: no journal, no sync, no key to keep
sorted while a million rows come in, and nothing any reader sees. :func:`plan_run`
then decides, set-based, which record of each customer counts (its last) and which
are suppressed, into the temporary table ``crm_keep``; :func:`apply_run` moves them,
in one transaction, into the customers, the list's consent, ``crm_entities`` and a
new version of the list (through :mod:`promod.lists.store`), so readers see the old
list or the new one. A run that is held is written to ``crm_staged`` (it must
outlive the daemon until ``crm apply``); a daemon killed half way loses only the
temporary rows, and the next start marks the run failed (docs/crm.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from promod.clock import utc_iso
from promod.crm.connector import ResponseRecord, SuppressionRecord
from promod.crm.records import CrmRecord
from promod.lists.store import apply_version, begin_version
from promod.store.seam import Dialect, Row, Transaction

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
    "keep_staged",
    "last_runs",
    "list_size",
    "mark_responses_exported",
    "mark_suppressions_sent",
    "metrics_rows",
    "pending_responses",
    "pending_suppressions",
    "plan_run",
    "prune_responses",
    "response_counts",
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
_RUN_KEYS = tuple(k.strip() for k in _RUN_COLUMNS.split(","))
_UPDATABLE = frozenset(_RUN_KEYS) - {"id", "connector", "list", "consent", "trigger"}
_STAGED_COLUMNS = (
    "customer_id, email, timezone, attributes, entity_type, entity_id, opt_in_id,"
    " opted_in_at, description, media_type"
)


def _run_dict(row: Row) -> dict[str, Any]:
    run = {key: row[i] for i, key in enumerate(_RUN_KEYS)}
    run["errors"] = json.loads(run["errors"])
    if run["finished_at"] is not None:
        run["duration"] = round(float(run["finished_at"]) - float(run["started_at"]), 3)
    return run


def _stage_table(run_id: int) -> str:
    """The temporary table a run's records stream into (one per run: runs may overlap)."""
    return f"crm_stage_{int(run_id)}"


def _create_stage(tx: Transaction, run_id: int) -> str:
    table = _stage_table(run_id)
    seq = tx.dialect.sequence_key("seq")  # appended in arrival order
    tx.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {table} ({seq}, customer_id TEXT NOT NULL,"
        " email TEXT, timezone TEXT, attributes TEXT NOT NULL, entity_type TEXT NOT NULL,"
        " entity_id TEXT NOT NULL, opt_in_id TEXT NOT NULL, opted_in_at REAL,"
        " description TEXT, media_type TEXT NOT NULL)"
    )
    return table


def _drop_staged(tx: Transaction, run_id: int) -> None:
    """Drop a run's staged records, temporary and kept (the whole table when all are its)."""
    tx.execute(f"DROP TABLE IF EXISTS {_stage_table(run_id)}")
    others = tx.fetch_value(
        "SELECT 1 FROM crm_staged WHERE run_id <> :run LIMIT 1", {"run": run_id}
    )
    if others is None:
        tx.execute("DELETE FROM crm_staged")
    else:
        tx.execute("DELETE FROM crm_staged WHERE run_id = :run", {"run": run_id})


def fail_interrupted(tx: Transaction, *, now: float) -> list[str]:
    """Runs left ``running`` by a killed daemon: failed, staged rows dropped; their connectors."""
    rows = tx.fetch_all("SELECT id, connector FROM crm_runs WHERE state = 'running'")
    for row in rows:
        _drop_staged(tx, int(row[0]))
        tx.execute(
            "UPDATE crm_runs SET state = 'failed', error = 'interrupted (the daemon stopped)',"
            " finished_at = :now WHERE id = :id",
            {"now": now, "id": row[0]},
        )
    return sorted({str(r[1]) for r in rows})


def begin_run(
    tx: Transaction,
    connector: str,
    list_name: str,
    consent: str,
    *,
    trigger: str,
    now: float,
) -> int:
    run_id = tx.fetch_value(
        "INSERT INTO crm_runs (connector, list, consent, trigger, state, started_at)"
        " VALUES (:connector, :list, :consent, :trigger, 'running', :now) RETURNING id",
        {
            "connector": connector,
            "list": list_name,
            "consent": consent,
            "trigger": trigger,
            "now": now,
        },
    )
    return int(run_id)


def update_run(tx: Transaction, run_id: int, **fields: Any) -> None:
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValueError(f"crm_runs has no updatable column {sorted(unknown)}")
    if "errors" in fields:
        fields["errors"] = json.dumps(fields["errors"][:MAX_ERRORS])
    sets = ", ".join(f"{key} = :{key}" for key in fields)
    tx.execute(f"UPDATE crm_runs SET {sets} WHERE id = :run_id", {**fields, "run_id": run_id})


def finish_run(
    tx: Transaction, run_id: int, state: str, *, now: float, error: str | None = None
) -> None:
    if state in ("failed", "discarded"):
        _drop_staged(tx, run_id)
    tx.execute(
        "UPDATE crm_runs SET state = :state, error = coalesce(:error, error),"
        " finished_at = :now WHERE id = :id",
        {"state": state, "error": error, "now": now, "id": run_id},
    )


def stage_records(tx: Transaction, run_id: int, records: Iterable[CrmRecord]) -> None:
    """Append records of a run (a customer given twice counts by its last record)."""
    table = _create_stage(tx, run_id)
    tx.executemany(
        f"INSERT INTO {table} ({_STAGED_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        records,
    )


def keep_staged(tx: Transaction, run_id: int) -> None:
    """Write a held run's records (as :func:`plan_run` chose them) where they outlast a restart."""
    table = _stage_table(run_id)
    tx.execute(
        f"INSERT INTO crm_staged (run_id, {_STAGED_COLUMNS}) SELECT :run,"
        + ", ".join(f"s.{c.strip()}" for c in _STAGED_COLUMNS.split(","))
        + f" FROM crm_keep k JOIN {table} s ON s.seq = k.seq ORDER BY k.customer_id",
        {"run": run_id},
    )
    tx.execute(f"DROP TABLE {table}")
    tx.execute("DROP TABLE IF EXISTS crm_keep")


def _restage(tx: Transaction, run_id: int) -> None:
    """Bring a held run's kept records back into its temporary table, to plan and apply."""
    table = _stage_table(run_id)
    tx.execute(f"DROP TABLE IF EXISTS {table}")
    table = _create_stage(tx, run_id)
    tx.execute(
        f"INSERT INTO {table} ({_STAGED_COLUMNS}) SELECT {_STAGED_COLUMNS} FROM crm_staged"
        " WHERE run_id = :run ORDER BY customer_id",
        {"run": run_id},
    )


def _current(tx: Transaction, list_name: str) -> tuple[int | None, int | None]:
    row = tx.fetch_one("SELECT id, version FROM lists WHERE name = :name", {"name": list_name})
    if row is None or row[1] is None:
        return None, None
    return int(row[0]), int(row[1])


# A staged record ``s`` whose address is on the suppression list (``p``) stays out
# unless the CRM has a newer opt-in than the suppression (a later opted_in_at, or
# another opt_in_id than the one promod knew before the suppression), or, for an
# unsubscription, the consent was granted again in promod since.
def _still_suppressed(dialect: Dialect) -> str:
    return f"""(NOT (coalesce(s.opted_in_at, 0) > p.created_at)
    AND NOT EXISTS (SELECT 1 FROM crm_entities e WHERE e.connector = :connector
        AND e.customer_id = s.customer_id AND e.opt_in_id <> s.opt_in_id
        AND e.seen_at <= p.created_at)
    AND NOT (p.reason = 'unsubscribed' AND EXISTS (SELECT 1 FROM customer_consents cc
        WHERE cc.customer_id = s.customer_id AND cc.consent = :consent AND cc.granted = 1
        AND cc.updated_at > {dialect.iso_time("p.created_at")})))"""


def plan_run(
    tx: Transaction, run_id: int, connector: str, list_name: str, consent: str
) -> dict[str, int]:
    """What applying the run would do: members, added, removed, suppressed, before.

    Leaves the decision in the temporary table ``crm_keep``: one row per customer
    of the run, its last staged record (``seq``), whether it is a member (not
    suppressed) and whether its address was suppressed (a member then lifts it).
    """
    params = {"run": run_id, "connector": connector, "consent": consent}
    table = _create_stage(tx, run_id)
    if tx.fetch_value(f"SELECT 1 FROM {table} LIMIT 1") is None:
        _restage(tx, run_id)  # a held run, applied by an operator
    tx.execute("DROP TABLE IF EXISTS crm_keep")
    tx.execute(
        "CREATE TEMP TABLE crm_keep (customer_id TEXT PRIMARY KEY, seq INTEGER NOT NULL,"
        " member INTEGER NOT NULL, listed INTEGER NOT NULL) WITHOUT ROWID"
    )
    # Each customer's last record, with the one suppression of its address if any.
    tx.execute(
        "INSERT INTO crm_keep (customer_id, seq, member, listed)"
        " SELECT s.customer_id, s.seq,"
        " CASE WHEN p.address IS NULL THEN 1"
        f" WHEN {_still_suppressed(tx.dialect)} THEN 0 ELSE 1 END,"
        " CASE WHEN p.address IS NULL THEN 0 ELSE 1 END"
        f" FROM (SELECT customer_id, max(seq) AS seq FROM {table}"
        f" GROUP BY customer_id) AS last JOIN {table} s ON s.seq = last.seq"
        " LEFT JOIN suppressions p ON p.address = s.email"
        " ORDER BY s.customer_id",
        params,
    )
    counts = tx.fetch_one("SELECT count(*), coalesce(sum(member), 0) FROM crm_keep")
    staged, members = (0, 0) if counts is None else (int(counts[0]), int(counts[1]))
    list_id, version = _current(tx, list_name)
    if version is None:
        before, added, removed = 0, members, 0
    else:
        where = {"list": list_id, "version": version}
        before = int(
            tx.fetch_value(
                "SELECT count(*) FROM list_members WHERE list_id = :list AND version = :version",
                where,
                0,
            )
        )
        kept = int(
            tx.fetch_value(
                "SELECT count(*) FROM list_members m JOIN crm_keep k"
                " ON k.customer_id = m.customer_id"
                " WHERE m.list_id = :list AND m.version = :version AND k.member = 1",
                where,
                0,
            )
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
    tx: Transaction,
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
    transaction (its decisions are still in ``crm_keep``). Rows the CRM did not
    change are left as they are (no rewrite of a million unchanged customers).
    """
    if plan is None:
        plan = plan_run(tx, run_id, connector, list_name, consent)
    dialect = tx.dialect
    source = f"crm:{connector}"
    params = {
        "stamp": utc_iso(now),
        "now": now,
        "source": source,
        "connector": connector,
        "consent": consent,
    }
    table = _stage_table(run_id)
    kept = f" FROM crm_keep k JOIN {table} s ON s.seq = k.seq WHERE k.member = 1"
    # A suppression the CRM answered with a newer opt-in is lifted.
    reconsented = tx.execute(
        "DELETE FROM suppressions WHERE address IN (SELECT s.email" + kept + " AND k.listed = 1)",
    )
    tx.execute(
        "INSERT INTO customers (id, email, timezone, attributes, created_at, updated_at)"
        " SELECT s.customer_id, s.email, s.timezone, s.attributes, :stamp, :stamp"
        + kept
        + " ORDER BY k.customer_id"
        " ON CONFLICT (id) DO UPDATE SET email = excluded.email,"
        " timezone = coalesce(excluded.timezone, customers.timezone),"
        f" attributes = {dialect.json_merge('customers.attributes', 'excluded.attributes')},"
        " updated_at = excluded.updated_at"
        " WHERE customers.email IS DISTINCT FROM excluded.email"
        " OR (excluded.timezone IS NOT NULL"
        " AND customers.timezone IS DISTINCT FROM excluded.timezone)"
        " OR (excluded.attributes <> '{}' AND customers.attributes <>"
        f" {dialect.json_merge('customers.attributes', 'excluded.attributes')})",
        params,
    )
    tx.execute(
        "INSERT INTO customer_consents (customer_id, consent, granted, updated_at, source)"
        " SELECT k.customer_id, :consent, 1, :stamp, :source FROM crm_keep k"
        " WHERE k.member = 1 ORDER BY k.customer_id"
        " ON CONFLICT (customer_id, consent) DO UPDATE SET"
        " updated_at = CASE WHEN customer_consents.granted = 1"
        " THEN customer_consents.updated_at ELSE excluded.updated_at END,"
        " granted = 1, source = excluded.source"
        " WHERE customer_consents.granted <> 1 OR customer_consents.source <> excluded.source",
        params,
    )
    entity = (
        "INSERT INTO crm_entities (connector, customer_id, email, entity_type, entity_id,"
        " opt_in_id, opted_in_at, description, media_type, seen_at)"
        " SELECT :connector, s.customer_id, s.email, s.entity_type, s.entity_id, s.opt_in_id,"
        " s.opted_in_at, s.description, s.media_type, :now"
        f" FROM crm_keep k JOIN {table} s ON s.seq = k.seq"
    )
    # seen_at is when promod last saw the entity change: what it knew before a
    # suppression is what a newer opt-in is measured against.
    tx.execute(
        entity + " WHERE k.member = 1 ORDER BY k.customer_id"
        " ON CONFLICT (connector, customer_id) DO UPDATE SET email = excluded.email,"
        " entity_type = excluded.entity_type, entity_id = excluded.entity_id,"
        " opt_in_id = excluded.opt_in_id, opted_in_at = excluded.opted_in_at,"
        " description = excluded.description, media_type = excluded.media_type,"
        " seen_at = excluded.seen_at"
        " WHERE crm_entities.email IS DISTINCT FROM excluded.email"
        " OR crm_entities.entity_type <> excluded.entity_type"
        " OR crm_entities.entity_id <> excluded.entity_id"
        " OR crm_entities.opt_in_id <> excluded.opt_in_id"
        " OR crm_entities.opted_in_at IS DISTINCT FROM excluded.opted_in_at"
        " OR crm_entities.description IS DISTINCT FROM excluded.description"
        " OR crm_entities.media_type <> excluded.media_type",
        params,
    )
    # Suppressed records still name their entity, for the exports (never their opt-in).
    tx.execute(
        entity + " WHERE k.member = 0 ON CONFLICT (connector, customer_id) DO NOTHING", params
    )
    staged = begin_version(tx, list_name, source=source, now=now)
    tx.execute(
        "INSERT INTO list_members (list_id, version, customer_id)"
        " SELECT :list, :version, customer_id FROM crm_keep WHERE member = 1"
        " ORDER BY customer_id",
        {"list": staged.list_id, "version": staged.version},
    )
    summary = apply_version(tx, staged, mode="replace", now=now)
    _drop_staged(tx, run_id)
    tx.execute("DROP TABLE crm_keep")
    update_run(
        tx,
        run_id,
        members=plan["members"],
        added=plan["added"],
        removed=plan["removed"],
        suppressed=plan["suppressed"],
        reconsented=reconsented,
        version=int(summary["version"]),
    )
    finish_run(tx, run_id, "applied", now=now)
    return {**summary, "suppressed": plan["suppressed"], "reconsented": reconsented}


def discard_run(tx: Transaction, run_id: int, *, now: float) -> None:
    finish_run(tx, run_id, "discarded", now=now)


def held_run(tx: Transaction, connector: str) -> dict[str, Any] | None:
    row = tx.fetch_one(
        f"SELECT {_RUN_COLUMNS} FROM crm_runs WHERE connector = :connector AND state = 'held'"
        " ORDER BY id DESC LIMIT 1",
        {"connector": connector},
    )
    return None if row is None else _run_dict(row)


def get_run(tx: Transaction, run_id: int) -> dict[str, Any] | None:
    row = tx.fetch_one(f"SELECT {_RUN_COLUMNS} FROM crm_runs WHERE id = :id", {"id": run_id})
    return None if row is None else _run_dict(row)


def runs(tx: Transaction, connector: str, *, limit: int = 20) -> list[dict[str, Any]]:
    rows = tx.fetch_all(
        f"SELECT {_RUN_COLUMNS} FROM crm_runs WHERE connector = :connector"
        " ORDER BY id DESC LIMIT :limit",
        {"connector": connector, "limit": limit},
    )
    return [_run_dict(r) for r in rows]


def last_runs(tx: Transaction) -> dict[str, dict[str, Any]]:
    """Each connector's latest run, and its latest applied one (``last_success``)."""
    found: dict[str, dict[str, Any]] = {}
    for row in tx.fetch_all(
        f"SELECT {_RUN_COLUMNS} FROM crm_runs WHERE id IN"
        " (SELECT max(id) FROM crm_runs GROUP BY connector)"
    ):
        run = _run_dict(row)
        found[run["connector"]] = {"last_run": run}
    for row in tx.fetch_all(
        "SELECT connector, max(finished_at) FROM crm_runs WHERE state = 'applied'"
        " GROUP BY connector"
    ):
        found.setdefault(str(row[0]), {})["last_success"] = float(row[1])
    return found


def list_size(tx: Transaction, list_name: str) -> int | None:
    list_id, version = _current(tx, list_name)
    if version is None:
        return None
    return int(
        tx.fetch_value(
            "SELECT count(*) FROM list_members WHERE list_id = :list AND version = :version",
            {"list": list_id, "version": version},
            0,
        )
    )


def metrics_rows(tx: Transaction) -> list[tuple[Any, ...]]:
    """(connector, last success time or None, fetched, members, invalid, suppressed)."""
    rows = tx.fetch_all(
        "SELECT r.connector, (SELECT max(finished_at) FROM crm_runs a WHERE"
        " a.connector = r.connector AND a.state = 'applied'), r.fetched, r.members,"
        " r.invalid, r.suppressed FROM crm_runs r WHERE r.id IN (SELECT max(id) FROM"
        " crm_runs WHERE state = 'applied' GROUP BY connector)"
    )
    return [tuple(r[i] for i in range(6)) for r in rows]


# -- suppressions out ---------------------------------------------------------


def pending_suppressions(
    tx: Transaction, connector: str, consent: str
) -> tuple[list[SuppressionRecord], int]:
    """Suppressions not yet sent to this connector, with their entity; and how many have none."""
    rows = tx.iterate(
        "SELECT p.reason, p.address, coalesce(p.customer_id, e.customer_id), e.entity_type,"
        " e.entity_id, p.created_at FROM suppressions p"
        " LEFT JOIN crm_entities e ON e.connector = :connector"
        " AND (e.customer_id = p.customer_id OR e.email = p.address)"
        " WHERE p.reason IN ('bounced', 'unsubscribed', 'complained')"
        " AND NOT EXISTS (SELECT 1 FROM crm_suppressions_sent x WHERE x.connector = :connector"
        " AND x.address = p.address AND x.created_at >= p.created_at)"
        " ORDER BY p.created_at, p.address",
        {"connector": connector},
    )
    records: list[SuppressionRecord] = []
    seen: set[str] = set()
    unmatched = 0
    for row in rows:
        address = str(row[1])
        if address in seen:
            continue
        seen.add(address)
        if row[4] is None:
            unmatched += 1
            continue
        records.append(
            SuppressionRecord(
                reason=str(row[0]),
                email=address,
                customer_id=row[2],
                entity_type=str(row[3]),
                entity_id=str(row[4]),
                consent=consent,
                at=float(row[5]),
            )
        )
    return records, unmatched


def mark_suppressions_sent(
    tx: Transaction, connector: str, records: Sequence[SuppressionRecord], *, now: float
) -> None:
    sql = tx.dialect.upsert(
        "crm_suppressions_sent",
        ("connector", "address", "created_at", "sent_at"),
        ("connector", "address"),
        {"created_at": "excluded.created_at", "sent_at": "excluded.sent_at"},
    )
    tx.executemany(
        sql,
        [
            {"connector": connector, "address": r.email, "created_at": r.at, "sent_at": now}
            for r in records
        ],
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
    tx: Transaction, connector: str, *, since: float, now: float
) -> dict[str, int]:
    """Record new responses of this connector's entities; count those with no entity."""
    params = {"since": since, "connector": connector, "now": now}
    recorded = tx.execute(
        "INSERT INTO crm_responses (connector, source_key, customer_id, entity_type,"
        " entity_id, campaign_id, response, at, recorded_at)"
        " SELECT :connector, src.key, src.customer_id, e.entity_type, e.entity_id,"
        " src.campaign_id, src.response, src.at, :now FROM"
        f" ({_RESPONSE_SOURCES}) AS src"
        " JOIN crm_entities e ON e.connector = :connector AND e.customer_id = src.customer_id"
        " WHERE true ON CONFLICT (connector, source_key) DO NOTHING",
        params,
    )
    unmatched = int(
        tx.fetch_value(
            f"SELECT count(*) FROM ({_RESPONSE_SOURCES}) AS src WHERE NOT EXISTS"
            " (SELECT 1 FROM crm_entities e WHERE e.connector = :connector"
            " AND e.customer_id = src.customer_id)",
            params,
            0,
        )
    )
    return {"recorded": recorded, "unmatched": unmatched}


def pending_responses(
    tx: Transaction, connector: str, *, limit: int = 10_000
) -> list[tuple[int, ResponseRecord]]:
    rows = tx.fetch_all(
        "SELECT id, response, customer_id, entity_type, entity_id, campaign_id, at"
        " FROM crm_responses WHERE connector = :connector AND exported_at IS NULL"
        " ORDER BY id LIMIT :limit",
        {"connector": connector, "limit": limit},
    )
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


def mark_responses_exported(tx: Transaction, ids: Sequence[int], *, now: float) -> None:
    tx.execute(
        "UPDATE crm_responses SET exported_at = :now WHERE " + tx.dialect.in_array("id", "ids"),
        {"now": now, "ids": tx.dialect.array(ids)},
    )


def prune_responses(tx: Transaction, connector: str, *, before: float) -> int:
    """Drop responses older than the retention; how many went."""
    return tx.execute(
        "DELETE FROM crm_responses WHERE connector = :connector AND at < :before",
        {"connector": connector, "before": before},
    )


def response_counts(tx: Transaction, connector: str) -> dict[str, int]:
    row = tx.fetch_one(
        "SELECT count(*), count(exported_at) FROM crm_responses WHERE connector = :connector",
        {"connector": connector},
    )
    assert row is not None
    return {"kept": int(row[0]), "exported": int(row[1])}
