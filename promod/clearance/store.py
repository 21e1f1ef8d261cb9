"""Clearance in the store: announcing runs, recording answers, deciding at the deadline.

A clearance run (``runs.state = 'clearance'``, created by the scheduler ``lead``
ahead of the campaign's start) lists its targets ``awaiting`` (or ``held`` outside a
pilot slice). The site answers per customer (``run_targets.approved``, last answer
wins) until ``runs.clearance_deadline``; at the deadline :func:`decide_sync` turns,
in one transaction, approved targets into ``pending`` (the ledger then grants them
under every cap), rejected ones into ``refused/rejected`` and unanswered ones into
``refused/not_approved`` (or ``pending`` with ``on_timeout = "approve"``). Every
state lives in the database, so a restart in between changes nothing::

    announce_sync(tx, now=now, public_url="https://promod.example.org")
    answer_sync(tx, "winback", 7, {"c42": True, "c43": False}, now=now)
    decision = decide_sync(tx, 7, now=now, min_approval_rate=Decimal("0.5"))
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from promod.campaigns.store import FINAL, get_sync
from promod.clock import utc_iso
from promod.notify.outbox import enqueue_sync
from promod.store.seam import Row, Transaction, TxLike, as_tx

__all__ = [
    "DEFAULT_PAGE",
    "LOW_APPROVAL_EVENT",
    "MAX_ANSWERS",
    "MAX_PAGE",
    "STATUSES",
    "ClearanceError",
    "Decision",
    "announce_sync",
    "answer_sync",
    "campaign_section_sync",
    "decide_due_sync",
    "decide_sync",
    "due_runs_sync",
    "event_id",
    "list_runs_sync",
    "list_targets_sync",
    "next_deadline_sync",
    "summary_sync",
]

EVENT = "clearance.required"
LOW_APPROVAL_EVENT = "clearance.low_approval"
EVENT_TYPE_ID = 5  # Optimove's "scheduled campaign" webhook
MAX_ANSWERS = 10_000  # answers per status call
MAX_PAGE = 10_000
DEFAULT_PAGE = 1_000
MAX_REPORTED = 100  # customers named in one refusal

# What the site sees of a target (docs/http-api.md, Clearance).
STATUSES = ("pending", "approved", "rejected", "granted", "refused")
# Targets the site may still answer while the run waits (held: outside a pilot slice).
ANSWERABLE = ("awaiting", "held")
# Refusal reasons that are clearance's own, not a cap's.
CLEARANCE_REASONS = ("rejected", "not_approved")
# Customers cut by the audience cap when the list was computed are not on it.
_LISTED = "NOT (t.status = 'refused' AND t.reason = 'audience_cap' AND t.approved IS NULL)"
_STATUS = (
    "CASE WHEN t.status = 'granted' THEN 'granted'"
    " WHEN t.status = 'refused' AND t.reason = 'rejected' THEN 'rejected'"
    " WHEN t.status = 'refused' THEN 'refused'"
    " WHEN t.approved = 1 THEN 'approved'"
    " WHEN t.approved = 0 THEN 'rejected'"
    " ELSE 'pending' END"
)
_RATE = Decimal("0.0001")


class ClearanceError(Exception):
    """A refused clearance call: an HTTP-like ``status``, a stable ``code``, details."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class Run:
    id: int
    campaign_id: str
    state: str
    deadline: float | None


@dataclass(frozen=True)
class Decision:
    """What the deadline did to one run."""

    run_id: int
    campaign_id: str
    state: str  # the run's new state: pilot | running | stopped
    listed: int
    approved: int
    rejected: int
    unanswered: int
    approval_rate: Decimal | None
    low_approval: bool


def event_id(run_id: int) -> str:
    """The stable id of a run's ``clearance.required`` event (one per run, ever)."""
    return f"{EVENT}:{run_id}"


def urls(public_url: str, campaign_id: str, run_id: int) -> tuple[str, str]:
    """(customers_url, status_url) of a run, as the site calls them."""
    base = f"{public_url.rstrip('/')}/v1/campaigns/{quote(campaign_id, safe='')}/runs/{run_id}"
    return f"{base}/customers", f"{base}/customers/status"


def _run(tx: TxLike, run_id: int) -> Run | None:
    tx = as_tx(tx)
    row = tx.fetch_one(
        "SELECT id, campaign_id, state, clearance_deadline FROM runs WHERE id = ?", (run_id,)
    )
    return None if row is None else Run(int(row[0]), str(row[1]), str(row[2]), row[3])


def _campaign_run(tx: TxLike, campaign_id: str, run_id: int) -> Run:
    tx = as_tx(tx)
    run = _run(tx, run_id)
    if run is None or run.campaign_id != campaign_id:
        raise ClearanceError(
            404,
            "not_found",
            f"campaign {campaign_id!r} has no run {run_id}",
            {"campaign_id": campaign_id, "run_id": run_id},
        )
    return run


def rate(approved: int, listed: int) -> Decimal | None:
    if listed <= 0:
        return None
    return (Decimal(approved) / Decimal(listed)).quantize(_RATE)


# -------------------------------------------------------------------- announcing


def announce_sync(tx: TxLike, *, now: float, public_url: str) -> list[int]:
    """Enqueue ``clearance.required`` for every waiting run not yet announced; their ids."""
    tx = as_tx(tx)
    rows = tx.fetch_all(
        "SELECT r.id, r.campaign_id, r.clearance_deadline FROM runs r"
        " WHERE r.state = 'clearance' AND NOT EXISTS"
        " (SELECT 1 FROM outbox o WHERE o.event_id = ? || r.id) ORDER BY r.id",
        (f"{EVENT}:",),
    )
    announced = []
    for run_id, campaign_id, deadline in rows:
        count = tx.fetch_value(
            "SELECT count(*) FROM run_targets WHERE run_id = ? AND status IN (?, ?)",
            (run_id, *ANSWERABLE),
        )
        customers_url, status_url = urls(public_url, campaign_id, run_id)
        enqueue_sync(
            tx,
            EVENT,
            {
                "event_type_id": EVENT_TYPE_ID,
                "campaign_id": campaign_id,
                "run_id": run_id,
                "clearance_required_by": utc_iso(float(deadline)),
                "customer_count": int(count),
                "customers_url": customers_url,
                "status_url": status_url,
            },
            now=now,
            event_id=event_id(run_id),
        )
        announced.append(int(run_id))
    return announced


# -------------------------------------------------------------------- the deadline


def next_deadline_sync(tx: TxLike) -> float | None:
    """The earliest deadline of a run still waiting for clearance."""
    tx = as_tx(tx)
    when = tx.fetch_value("SELECT min(clearance_deadline) FROM runs WHERE state = 'clearance'")
    return None if when is None else float(when)


def due_runs_sync(tx: TxLike, now: float) -> list[int]:
    tx = as_tx(tx)
    return [
        int(r[0])
        for r in tx.fetch_all(
            "SELECT id FROM runs WHERE state = 'clearance' AND clearance_deadline <= ? ORDER BY id",
            (now,),
        )
    ]


def decide_sync(
    tx: TxLike,
    run_id: int,
    *,
    now: float,
    min_approval_rate: Decimal | None = None,
) -> Decision | None:
    """Apply the answers of a run whose deadline has come (in the caller's transaction).

    Approved targets go to the ledger (``pending``; ``held`` ones stay held for after
    the pilot), rejected ones are refused ``rejected``, unanswered ones ``not_approved``
    or, with ``on_timeout = "approve"``, go to the ledger too. The run becomes
    ``pilot`` or ``running`` and a scheduled campaign ``running``. An approval rate
    below ``min_approval_rate`` enqueues ``clearance.low_approval``. None when the run
    is not (or no longer) due.
    """
    tx = as_tx(tx)
    run = _run(tx, run_id)
    if run is None or run.state != "clearance" or run.deadline is None or run.deadline > now:
        return None
    campaign = get_sync(tx, run.campaign_id)
    answers = {
        row[0]: int(row[1])
        for row in tx.fetch_all(
            "SELECT approved, count(*) FROM run_targets WHERE run_id = ? AND status IN (?, ?)"
            " GROUP BY approved",
            (run_id, *ANSWERABLE),
        )
    }
    approved, rejected, unanswered = answers.get(1, 0), answers.get(0, 0), answers.get(None, 0)
    listed = approved + rejected + unanswered
    if campaign is None or campaign.state in FINAL:
        tx.execute(
            "UPDATE run_targets SET status = 'refused', reason = 'stopped', decided_at = ?"
            " WHERE run_id = ? AND status IN (?, ?)",
            (now, run_id, *ANSWERABLE),
        )
        tx.execute("UPDATE runs SET state = 'stopped', finished_at = ? WHERE id = ?", (now, run_id))
        return Decision(
            run_id, run.campaign_id, "stopped", listed, approved, rejected, unanswered, None, False
        )
    tx.execute(
        "UPDATE run_targets SET status = 'refused', reason = 'rejected', decided_at = ?"
        " WHERE run_id = ? AND status IN (?, ?) AND approved = 0",
        (now, run_id, *ANSWERABLE),
    )
    if campaign.spec.clearance.on_timeout == "approve":
        tx.execute(
            "UPDATE run_targets SET status = 'pending' WHERE run_id = ? AND status = 'awaiting'",
            (run_id,),
        )
    else:
        tx.execute(
            "UPDATE run_targets SET status = 'refused', reason = 'not_approved', decided_at = ?"
            " WHERE run_id = ? AND status IN (?, ?) AND approved IS NULL",
            (now, run_id, *ANSWERABLE),
        )
        tx.execute(
            "UPDATE run_targets SET status = 'pending' WHERE run_id = ? AND status = 'awaiting'"
            " AND approved = 1",
            (run_id,),
        )
    state = "pilot" if campaign.pilot else "running"
    tx.execute("UPDATE runs SET state = ? WHERE id = ?", (state, run_id))
    tx.execute(
        "UPDATE campaigns SET state = 'running', updated_at = ? WHERE id = ?"
        " AND state = 'scheduled'",
        (now, run.campaign_id),
    )
    approval_rate = rate(approved, listed)
    low = (
        min_approval_rate is not None
        and approval_rate is not None
        and approval_rate < min_approval_rate
    )
    if low:
        enqueue_sync(
            tx,
            LOW_APPROVAL_EVENT,
            {
                "campaign_id": run.campaign_id,
                "run_id": run_id,
                "approval_rate": str(approval_rate),
                "min_approval_rate": str(min_approval_rate),
                "customer_count": listed,
                "approved": approved,
                "rejected": rejected,
                "unanswered": unanswered,
            },
            now=now,
            event_id=f"{LOW_APPROVAL_EVENT}:{run_id}",
        )
    return Decision(
        run_id,
        run.campaign_id,
        state,
        listed,
        approved,
        rejected,
        unanswered,
        approval_rate,
        low,
    )


def decide_due_sync(
    tx: Transaction, *, now: float, min_approval_rate: Decimal | None = None
) -> list[Decision]:
    """:func:`decide_sync` for every run whose deadline has come, in one transaction."""
    out = []
    for run_id in due_runs_sync(tx, now):
        decision = decide_sync(tx, run_id, now=now, min_approval_rate=min_approval_rate)
        if decision is not None:
            out.append(decision)
    return out


# -------------------------------------------------------------------- the site's calls


def list_targets_sync(
    tx: TxLike,
    campaign_id: str,
    run_id: int,
    *,
    status: str | None = None,
    cursor: int = -1,
    limit: int = DEFAULT_PAGE,
) -> dict[str, Any]:
    """One page of a run's target list in rank order, after ``cursor`` (a rank)."""
    tx = as_tx(tx)
    run = _campaign_run(tx, campaign_id, run_id)
    sql = f"SELECT t.rank, t.customer_id, {_STATUS} FROM run_targets t WHERE t.run_id = ?"
    sql += f" AND t.rank > ? AND {_LISTED}"
    params: list[Any] = [run.id, cursor]
    if status is not None:
        sql += f" AND {_STATUS} = ?"
        params.append(status)
    sql += " ORDER BY t.rank LIMIT ?"
    params.append(limit + 1)
    rows = tx.fetch_all(sql, params)
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "customers": [{"customer_id": r[1], "status": r[2]} for r in rows],
        "next_cursor": str(rows[-1][0]) if more and rows else None,
    }


def answer_sync(
    tx: TxLike,
    campaign_id: str,
    run_id: int,
    answers: dict[str, bool],
    *,
    now: float,
) -> dict[str, Any]:
    """Record the site's answers, all or none; the last answer for a customer wins.

    Refused (ClearanceError) after the deadline (409), and for any customer not on
    the run's list (409, naming them; nothing is recorded).
    """
    tx = as_tx(tx)
    run = _campaign_run(tx, campaign_id, run_id)
    if run.deadline is None:
        raise ClearanceError(
            409, "conflict", f"run {run_id} does not wait for clearance", {"run_id": run_id}
        )
    deadline = utc_iso(float(run.deadline))
    campaign = get_sync(tx, campaign_id)
    if run.state != "clearance" or now >= run.deadline:
        raise ClearanceError(
            409,
            "conflict",
            f"clearance of run {run_id} closed at {deadline}; answers no longer count",
            {"run_id": run_id, "clearance_required_by": deadline, "run_state": run.state},
        )
    if campaign is None or campaign.state in FINAL:
        state = campaign.state if campaign else "gone"
        raise ClearanceError(
            409,
            "conflict",
            f"campaign {campaign_id!r} is {state}; answers no longer count",
            {"run_id": run_id, "campaign_state": state},
        )
    ids = list(answers)
    found: set[str] = set()
    for start in range(0, len(ids), 5_000):
        chunk = tx.dialect.array(ids[start : start + 5_000])
        found.update(
            row[0]
            for row in tx.fetch_all(
                "SELECT customer_id FROM run_targets WHERE run_id = :run AND status IN (:a, :b)"
                f" AND {tx.dialect.in_array('customer_id', 'ids')}",
                {"run": run_id, "a": ANSWERABLE[0], "b": ANSWERABLE[1], "ids": chunk},
            )
        )
    missing = [cid for cid in ids if cid not in found]
    if missing:
        named = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ClearanceError(
            409,
            "conflict",
            f"{len(missing)} customer{'s are' if len(missing) != 1 else ' is'} not on the"
            f" target list of run {run_id}: {named}; nothing applied",
            {"not_in_list": missing[:MAX_REPORTED], "count": len(missing)},
        )
    tx.executemany(
        "UPDATE run_targets SET approved = ?, answered_at = ? WHERE run_id = ? AND customer_id = ?",
        [(int(ok), now, run_id, cid) for cid, ok in answers.items()],
    )
    approved = sum(1 for ok in answers.values() if ok)
    return {
        "run_id": run_id,
        "updated": len(answers),
        "approved": approved,
        "rejected": len(answers) - approved,
        "clearance_required_by": deadline,
    }


# -------------------------------------------------------------------- operators


def _counts(tx: TxLike, where: str, params: tuple[Any, ...]) -> dict[str, int]:
    tx = as_tx(tx)
    row = tx.fetch_one(
        "SELECT count(*), count(*) FILTER (WHERE t.approved = 1),"
        " count(*) FILTER (WHERE t.approved = 0), count(*) FILTER (WHERE t.approved IS NULL),"
        " count(*) FILTER (WHERE t.status = 'granted'),"
        " count(*) FILTER (WHERE t.status = 'refused' AND t.reason NOT IN"
        " ('rejected', 'not_approved', 'stopped') AND t.reason NOT LIKE 'eligibility:%'),"
        " count(*) FILTER (WHERE t.status IN ('pending', 'held'))"
        f" FROM run_targets t JOIN runs r ON r.id = t.run_id WHERE {where} AND {_LISTED}",
        params,
    )
    assert row is not None  # an aggregate always has its row
    keys = ("customers", "approved", "rejected", "unanswered", "granted", "capped", "to_grant")
    return {k: int(v) for k, v in zip(keys, row, strict=True)}


def _describe(run: Row | tuple[Any, ...], counts: dict[str, int]) -> dict[str, Any]:
    approval = rate(counts["approved"], counts["customers"])
    return {
        "run": int(run[0]),
        "campaign": run[1],
        "state": run[2],
        "clearance_required_by": utc_iso(float(run[3])),
        "deadline": float(run[3]),
        "open": run[2] == "clearance",
        "announced": bool(run[4]),
        **counts,
        "approval_rate": None if approval is None else str(approval),
    }


_RUNS = (
    "SELECT r.id, r.campaign_id, r.state, r.clearance_deadline,"
    " EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = 'clearance.required:' || r.id)"
    " FROM runs r WHERE r.clearance_deadline IS NOT NULL"
)


def summary_sync(tx: TxLike, run_id: int) -> dict[str, Any] | None:
    """A clearance run's figures: approved, rejected, unanswered, granted, capped, rate."""
    tx = as_tx(tx)
    run = tx.fetch_one(_RUNS + " AND r.id = ?", (run_id,))
    if run is None:
        return None
    return _describe(run, _counts(tx, "t.run_id = ?", (run_id,)))


def list_runs_sync(
    tx: TxLike, *, campaign_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Runs awaiting or past clearance, newest first, with their figures."""
    tx = as_tx(tx)
    sql, params = _RUNS, []
    if campaign_id is not None:
        sql += " AND r.campaign_id = ?"
        params.append(campaign_id)
    runs = tx.fetch_all(sql + " ORDER BY r.id DESC LIMIT ?", (*params, limit))
    return [_describe(run, _counts(tx, "t.run_id = ?", (run[0],))) for run in runs]


def campaign_section_sync(tx: TxLike, campaign_id: str) -> dict[str, Any] | None:
    """The campaign report's ``clearance`` section: every clearance run added up."""
    tx = as_tx(tx)
    runs = tx.fetch_value(
        "SELECT count(*) FROM runs WHERE campaign_id = ? AND clearance_deadline IS NOT NULL",
        (campaign_id,),
    )
    if not runs:
        return None
    open_runs = tx.fetch_value(
        "SELECT count(*) FROM runs WHERE campaign_id = ? AND state = 'clearance'",
        (campaign_id,),
    )
    counts = _counts(tx, "r.campaign_id = ? AND r.clearance_deadline IS NOT NULL", (campaign_id,))
    approval = rate(counts["approved"], counts["customers"])
    return {
        "runs": int(runs),
        "open": int(open_runs),
        **counts,
        "approval_rate": None if approval is None else str(approval),
    }
