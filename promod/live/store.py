"""The live engine's store functions: every statement of ``promod.live``, against the seam.

The engine (:mod:`promod.live.engine`), the trigger index (:mod:`promod.live.index`)
and the report section (:mod:`promod.live.report`) call these inside one
:class:`~promod.store.seam.Transaction` opened by ``Database.run``; none of them
writes SQL itself (docs/architecture.md, "The store seam")::

    cursor = event_cursor(tx)
    for row in events_after(tx, cursor, limit=2000): ...
    move_cursor(tx, last_seq)

Tables: ``live_cursor``, ``live_firings``, ``live_refusals``, ``live_timers``
(migration ``0006_live``); the engine also adds ``run_targets`` rows to a live
run and counts them on ``runs.targeted``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from promod.store.seam import Row, Transaction

__all__ = [
    "ActiveRun",
    "DueTimer",
    "NewFiring",
    "NewTarget",
    "StoredEventRow",
    "add_refusals",
    "add_targeted",
    "campaign_kind",
    "cancel_timers",
    "close_timer",
    "count_events",
    "due_timers",
    "event_cursor",
    "event_properties",
    "events_after",
    "existing_targets",
    "first_event_seq",
    "has_target",
    "in_segment",
    "insert_firing",
    "insert_firings",
    "insert_target",
    "insert_targets",
    "live_runs",
    "move_cursor",
    "move_cursor_to_newest",
    "next_rank",
    "next_timer",
    "open_timer",
    "report_firings",
    "report_refusals",
    "report_sources",
    "report_target_refusals",
    "report_timers",
    "report_timings",
    "savepoint",
    "version_spec",
]

ActiveRun = tuple[str, int, int, float]
"""(campaign id, version, run id, run start) of a running live campaign's open run."""

StoredEventRow = tuple[int, str, str, int, str]
"""(seq, customer id, name, ts, properties JSON) of a stored event."""

NewTarget = tuple[int, int, str, float]
"""(run id, rank, customer id, due at) of a pending target."""

NewFiring = tuple[int, str, str, str, int | None, float, float, float]
"""(run, customer, campaign, source, event seq, event ts, fired at, due at) of a firing."""

DueTimer = tuple[int, str, int, str, str, int, float, float]
"""(id, campaign, run, customer, missing, after_seq, after_ts, fires_at) of a timer."""


# -- transactions -------------------------------------------------------------------


@contextmanager
def savepoint(tx: Transaction, name: str) -> Iterator[None]:
    """A savepoint: the block's writes are rolled back (only those) when it raises."""
    tx.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        tx.execute(f"ROLLBACK TO {name}")
        tx.execute(f"RELEASE {name}")
        raise
    tx.execute(f"RELEASE {name}")


# -- the trigger index --------------------------------------------------------------


def live_runs(tx: Transaction) -> list[ActiveRun]:
    """Every running live-action campaign with its open run(s), by campaign and run."""
    kind = tx.dialect.json_text("c.spec", "kind")
    rows = tx.fetch_all(
        "SELECT c.id, c.version, r.id, r.started_at FROM campaigns AS c"
        " JOIN runs AS r ON r.campaign_id = c.id AND r.state IN ('pilot', 'running')"
        f" WHERE c.state = 'running' AND {kind} = 'live_action'"
        " ORDER BY c.id, r.id"
    )
    return [(str(r[0]), int(r[1]), int(r[2]), float(r[3])) for r in rows]


def version_spec(tx: Transaction, campaign_id: str, version: int) -> str:
    """The spec JSON of one version of a campaign."""
    text = tx.fetch_value(
        "SELECT spec FROM campaign_versions WHERE campaign_id = :campaign AND version = :version",
        {"campaign": campaign_id, "version": version},
    )
    if text is None:
        raise LookupError(f"campaign {campaign_id!r} has no version {version}")
    return str(text)


def campaign_kind(tx: Transaction, campaign_id: str) -> str | None:
    """The ``kind`` of a campaign's current spec; None when there is no such campaign."""
    kind = tx.dialect.json_text("spec", "kind")
    row = tx.fetch_one(f"SELECT {kind} FROM campaigns WHERE id = :id", {"id": campaign_id})
    return None if row is None or row[0] is None else str(row[0])


# -- the event stream ---------------------------------------------------------------


def event_cursor(tx: Transaction) -> int:
    """The seq up to which events have been matched."""
    return int(tx.fetch_value("SELECT seq FROM live_cursor WHERE id = 1", default=0))


def move_cursor(tx: Transaction, seq: int) -> None:
    tx.execute("UPDATE live_cursor SET seq = :seq WHERE id = 1", {"seq": seq})


def move_cursor_to_newest(tx: Transaction) -> bool:
    """Skip every stored event (nothing listens); True when the cursor moved.

    Writes only when there are new events: a pass with nothing to do writes nothing.
    """
    return bool(
        tx.execute(
            "UPDATE live_cursor SET seq = (SELECT max(seq) FROM events)"
            " WHERE id = 1 AND seq < (SELECT coalesce(max(seq), 0) FROM events)"
        )
    )


def events_after(tx: Transaction, cursor: int, limit: int) -> list[StoredEventRow]:
    """The next ``limit`` events after ``cursor``, in seq order."""
    rows = tx.fetch_all(
        "SELECT seq, customer_id, name, ts, properties FROM events WHERE seq > :cursor"
        " ORDER BY seq LIMIT :limit",
        {"cursor": cursor, "limit": limit},
    )
    return [(int(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4])) for r in rows]


def _window(
    name: str, customer_id: str, until: int, within: int | None
) -> tuple[str, dict[str, Any]]:
    sql = "name = :name AND customer_id = :customer AND ts <= :until"
    params: dict[str, Any] = {"name": name, "customer": customer_id, "until": until}
    if within is not None:
        sql += " AND ts >= :since"
        params["since"] = until - within
    return sql, params


def count_events(
    tx: Transaction, name: str, customer_id: str, until: int, within: int | None
) -> int:
    """The customer's ``name`` events with ``until - within <= ts <= until``."""
    where, params = _window(name, customer_id, until, within)
    return int(tx.fetch_value(f"SELECT count(*) FROM events WHERE {where}", params, default=0))


def event_properties(
    tx: Transaction, name: str, customer_id: str, until: int, within: int | None
) -> list[str]:
    """The properties JSON of the customer's ``name`` events in the same window."""
    where, params = _window(name, customer_id, until, within)
    return [str(r[0]) for r in tx.fetch_all(f"SELECT properties FROM events WHERE {where}", params)]


def first_event_seq(
    tx: Transaction, customer_id: str, name: str, start: float, end: float
) -> int | None:
    """The seq of the customer's first ``name`` event with ``start <= ts < end``, if any."""
    seq = tx.fetch_value(
        "SELECT seq FROM events WHERE name = :name AND customer_id = :customer"
        " AND ts >= :start AND ts < :end ORDER BY ts LIMIT 1",
        {"name": name, "customer": customer_id, "start": start, "end": end},
    )
    return None if seq is None else int(seq)


def in_segment(tx: Transaction, segment_sql: str, params: Sequence[Any], customer_id: str) -> bool:
    """The compiled segment (``promod.campaigns.segments.compile_segment``) selects him."""
    row = tx.fetch_one(
        f"SELECT 1 FROM ({segment_sql}) AS s WHERE s.customer_id = ? LIMIT 1",
        [*params, customer_id],
    )
    return row is not None


# -- firing into a live run ---------------------------------------------------------


def has_target(tx: Transaction, run_id: int, customer_id: str) -> bool:
    """The customer is already a target of the run (rewarded, waiting or refused)."""
    row = tx.fetch_one(
        "SELECT 1 FROM run_targets WHERE run_id = :run AND customer_id = :customer",
        {"run": run_id, "customer": customer_id},
    )
    return row is not None


def next_rank(tx: Transaction, run_id: int) -> int:
    """The rank after the run's last target (the engine counts on from it in a pass)."""
    return int(
        tx.fetch_value(
            "SELECT coalesce(max(rank), -1) + 1 FROM run_targets WHERE run_id = :run",
            {"run": run_id},
            default=0,
        )
    )


def insert_target(tx: Transaction, run_id: int, rank: int, customer_id: str, due: float) -> bool:
    """Add a pending target; False when the customer is a target of the run already."""
    sql = tx.dialect.insert_ignore(
        "run_targets",
        ("run_id", "rank", "customer_id", "due_at", "status"),
        ("run_id", "customer_id"),
    )
    params = {
        "run_id": run_id,
        "rank": rank,
        "customer_id": customer_id,
        "due_at": due,
        "status": "pending",
    }
    return bool(tx.execute(sql, params))


def existing_targets(
    tx: Transaction, run_ids: Iterable[int], customer_ids: Iterable[str]
) -> set[tuple[int, str]]:
    """The (run, customer) pairs among these runs and customers that are targets already."""
    d = tx.dialect
    rows = tx.fetch_all(
        "SELECT run_id, customer_id FROM run_targets WHERE "
        + d.in_array("run_id", "runs")
        + " AND "
        + d.in_array("customer_id", "customers"),
        {"runs": d.array(sorted(run_ids)), "customers": d.array(sorted(customer_ids))},
    )
    return {(int(r[0]), str(r[1])) for r in rows}


def insert_targets(tx: Transaction, rows: Sequence[NewTarget]) -> None:
    """Add pending targets known to be new (a customer already there raises)."""
    tx.executemany(
        "INSERT INTO run_targets (run_id, rank, customer_id, due_at, status)"
        " VALUES (:run, :rank, :customer, :due, 'pending')",
        [{"run": r, "rank": k, "customer": c, "due": d} for r, k, c, d in rows],
    )


def insert_firings(tx: Transaction, rows: Sequence[NewFiring]) -> None:
    tx.executemany(_INSERT_FIRING, [dict(zip(_FIRING_KEYS, row, strict=True)) for row in rows])


_FIRING_KEYS = ("run", "customer", "campaign", "source", "seq", "event_ts", "fired_at", "due_at")
_INSERT_FIRING = (
    "INSERT INTO live_firings (run_id, customer_id, campaign_id, source, event_seq,"
    " event_ts, fired_at, due_at) VALUES (:run, :customer, :campaign, :source, :seq,"
    " :event_ts, :fired_at, :due_at)"
)


def insert_firing(
    tx: Transaction,
    *,
    run_id: int,
    customer_id: str,
    campaign_id: str,
    source: str,
    event_seq: int | None,
    event_ts: float,
    fired_at: float,
    due_at: float,
) -> None:
    tx.execute(
        _INSERT_FIRING,
        {
            "run": run_id,
            "customer": customer_id,
            "campaign": campaign_id,
            "source": source,
            "seq": event_seq,
            "event_ts": event_ts,
            "fired_at": fired_at,
            "due_at": due_at,
        },
    )


def add_targeted(tx: Transaction, counts: Mapping[int, int]) -> None:
    """Count new targets on their runs (``runs.targeted``)."""
    tx.executemany(
        "UPDATE runs SET targeted = targeted + :n WHERE id = :run",
        [{"n": n, "run": run_id} for run_id, n in counts.items()],
    )


def add_refusals(tx: Transaction, counts: Mapping[tuple[str, str], int]) -> None:
    """Add to the counts of firings that added nobody, by campaign and reason."""
    sql = tx.dialect.upsert(
        "live_refusals",
        ("campaign_id", "reason", "count"),
        ("campaign_id", "reason"),
        {"count": "live_refusals.count + excluded.count"},
    )
    tx.executemany(
        sql, [{"campaign_id": c, "reason": r, "count": n} for (c, r), n in counts.items()]
    )


# -- inaction timers ----------------------------------------------------------------


def cancel_timers(
    tx: Transaction,
    campaign_id: str,
    customer_id: str,
    *,
    event_seq: int,
    event_ts: int,
    now: float,
) -> int:
    """Cancel the customer's pending timer whose window holds ``event_ts``; how many."""
    return tx.execute(
        "UPDATE live_timers SET state = 'cancelled', closed_at = :now, closed_by = :seq"
        " WHERE campaign_id = :campaign AND customer_id = :customer AND state = 'pending'"
        " AND after_ts <= :ts AND fires_at > :ts",
        {
            "now": now,
            "seq": event_seq,
            "campaign": campaign_id,
            "customer": customer_id,
            "ts": event_ts,
        },
    )


def open_timer(
    tx: Transaction,
    *,
    campaign_id: str,
    run_id: int,
    customer_id: str,
    missing: str,
    after_seq: int,
    after_ts: float,
    fires_at: float,
) -> int:
    """Open an inaction window; 0 when the customer has one pending for the campaign."""
    return tx.execute(
        "INSERT INTO live_timers (campaign_id, run_id, customer_id, missing, after_seq,"
        " after_ts, fires_at) VALUES (:campaign, :run, :customer, :missing, :after_seq,"
        " :after_ts, :fires_at) ON CONFLICT DO NOTHING",
        {
            "campaign": campaign_id,
            "run": run_id,
            "customer": customer_id,
            "missing": missing,
            "after_seq": after_seq,
            "after_ts": after_ts,
            "fires_at": fires_at,
        },
    )


def due_timers(tx: Transaction, now: float, limit: int) -> list[DueTimer]:
    """Pending timers whose window closed by ``now`` (a paused campaign's wait), oldest first."""
    rows = tx.fetch_all(
        "SELECT t.id, t.campaign_id, t.run_id, t.customer_id, t.missing, t.after_seq,"
        " t.after_ts, t.fires_at FROM live_timers AS t"
        " JOIN campaigns AS c ON c.id = t.campaign_id"
        " WHERE t.state = 'pending' AND t.fires_at <= :now AND c.state <> 'paused'"
        " ORDER BY t.fires_at, t.id LIMIT :limit",
        {"now": now, "limit": limit},
    )
    return [
        (
            int(r[0]),
            str(r[1]),
            int(r[2]),
            str(r[3]),
            str(r[4]),
            int(r[5]),
            float(r[6]),
            float(r[7]),
        )
        for r in rows
    ]


def close_timer(
    tx: Transaction, timer_id: int, state: str, now: float, closed_by: int | None
) -> None:
    tx.execute(
        "UPDATE live_timers SET state = :state, closed_at = :now, closed_by = :by"
        " WHERE id = :id AND state = 'pending'",
        {"state": state, "now": now, "by": closed_by, "id": timer_id},
    )


def next_timer(tx: Transaction, now: float) -> float | None:
    """The earliest inaction window closing after ``now`` (for the scheduler's next wake)."""
    value = tx.fetch_value(
        "SELECT min(fires_at) FROM live_timers WHERE state = 'pending' AND fires_at > :now",
        {"now": now},
    )
    return None if value is None else float(value)


# -- the report section -------------------------------------------------------------


def report_firings(tx: Transaction, campaign_id: str) -> int:
    """Targets the campaign's triggers added."""
    return int(
        tx.fetch_value(
            "SELECT count(*) FROM live_firings WHERE campaign_id = :c", {"c": campaign_id}, 0
        )
    )


def report_refusals(tx: Transaction, campaign_id: str) -> dict[str, int]:
    """Firings that added nobody, by the engine's reason."""
    rows = tx.fetch_all(
        "SELECT reason, count FROM live_refusals WHERE campaign_id = :c", {"c": campaign_id}
    )
    return {str(r[0]): int(r[1]) for r in rows}


def report_target_refusals(tx: Transaction, campaign_id: str) -> list[tuple[str | None, int]]:
    """Fired targets the ledger refused, by its reason."""
    rows = tx.fetch_all(
        "SELECT t.reason, count(*) FROM live_firings AS f JOIN run_targets AS t"
        " ON t.run_id = f.run_id AND t.customer_id = f.customer_id"
        " WHERE f.campaign_id = :c AND t.status = 'refused' GROUP BY t.reason",
        {"c": campaign_id},
    )
    return [(None if r[0] is None else str(r[0]), int(r[1])) for r in rows]


def report_timings(tx: Transaction, campaign_id: str) -> list[tuple[float, float]]:
    """Per grant of a firing: (seconds from the event, seconds from the firing)."""
    rows: list[Row] = tx.fetch_all(
        "SELECT g.created_at - f.event_ts, g.created_at - f.fired_at"
        " FROM live_firings AS f JOIN grants AS g ON g.campaign_id = f.campaign_id"
        " AND g.run_id = f.run_id AND g.customer_id = f.customer_id"
        " WHERE f.campaign_id = :c AND g.state != 'failed'",
        {"c": campaign_id},
    )
    return [(float(r[0]), float(r[1])) for r in rows]


def report_timers(tx: Transaction, campaign_id: str) -> dict[str, int]:
    """The campaign's inaction timers by state."""
    rows = tx.fetch_all(
        "SELECT state, count(*) FROM live_timers WHERE campaign_id = :c GROUP BY state",
        {"c": campaign_id},
    )
    return {str(r[0]): int(r[1]) for r in rows}


def report_sources(tx: Transaction, campaign_id: str) -> dict[str, int]:
    """The campaign's firings by source (event, inaction)."""
    rows = tx.fetch_all(
        "SELECT source, count(*) FROM live_firings WHERE campaign_id = :c GROUP BY source",
        {"c": campaign_id},
    )
    return {str(r[0]): int(r[1]) for r in rows}
