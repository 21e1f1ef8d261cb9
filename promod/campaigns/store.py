"""Campaigns in the store: versions, states and their transitions.

States: draft → scheduled → running → completed, with paused and stopped. A
campaign can be updated (a new version, every one kept) until it has started.
Every transition that the notifier should hear of writes its event in the same
transaction::

    await apply(db, spec, by="alice", now=now)        # draft, version 1
    await launch(db, "winback", now=now, pilot="5%")   # scheduled or running
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from promod.campaigns.spec import CampaignSpec, parse_spec
from promod.notify.outbox import enqueue_sync
from promod.store.database import Database
from promod.store.seam import Row, Transaction, TxLike, as_tx

FINAL = ("completed", "stopped")

# The paused_reason of a campaign that only an operator's pause holds.
OPERATOR = "operator"


class CampaignError(Exception):
    """A refused campaign operation: ``code`` is an admin error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class CampaignRow:
    id: str
    version: int
    state: str
    spec: CampaignSpec
    spec_dict: dict[str, Any]
    next_run_at: float | None
    paused_reason: str | None
    paused_until: float | None
    pilot: str | None
    created_at: float
    updated_at: float
    launched_at: float | None
    paused_by: str | None = None
    paused_at: float | None = None
    held_by: str | None = None
    held_at: float | None = None

    def pause_info(self) -> dict[str, Any] | None:
        """Who or what paused the campaign, why and when; the operator's hold apart (a
        draft can be held too: it is launched paused)."""
        if self.state != "paused" and not (self.state == "draft" and self.held_by):
            return None
        hold = None if self.held_by is None else {"by": self.held_by, "at": self.held_at}
        automatic = None
        if self.paused_reason not in (None, OPERATOR):
            automatic = {
                "reason": self.paused_reason,
                "by": self.paused_by,
                "at": self.paused_at,
                "until": self.paused_until,
            }
        return {"operator": hold, "automatic": automatic}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.spec.name,
            "kind": self.spec.kind,
            "state": self.state,
            "version": self.version,
            "next_run_at": self.next_run_at,
            "paused_reason": self.paused_reason,
            "paused_until": self.paused_until,
            "pilot": self.pilot,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "launched_at": self.launched_at,
            "paused": self.pause_info(),
        }


@functools.lru_cache(maxsize=256)
def _stored_spec(text: str) -> tuple[CampaignSpec, str]:
    """A stored (already validated) spec, parsed once per version."""
    data = json.loads(text)
    return parse_spec(data, default_timezone=data.get("timezone", "UTC")), text


def row_to_campaign(row: Row | tuple[Any, ...]) -> CampaignRow:
    spec, text = _stored_spec(row[3])
    return CampaignRow(
        id=row[0],
        version=row[1],
        state=row[2],
        spec=spec,
        spec_dict=json.loads(text),
        next_run_at=row[4],
        paused_reason=row[5],
        paused_until=row[6],
        pilot=row[7],
        created_at=row[8],
        updated_at=row[9],
        launched_at=row[10],
        paused_by=row[11],
        paused_at=row[12],
        held_by=row[13],
        held_at=row[14],
    )


COLUMNS = (
    "id, version, state, spec, next_run_at, paused_reason, paused_until, pilot,"
    " created_at, updated_at, launched_at, paused_by, paused_at, held_by, held_at"
)


def get_sync(tx: TxLike, campaign_id: str) -> CampaignRow | None:
    row = as_tx(tx).fetch_one(
        f"SELECT {COLUMNS} FROM campaigns WHERE id = :id", {"id": campaign_id}
    )
    return None if row is None else row_to_campaign(row)


def require(tx: Transaction, campaign_id: str) -> CampaignRow:
    """The campaign, or :class:`CampaignError` ``not_found``."""
    current = get_sync(tx, campaign_id)
    if current is None:
        raise CampaignError("not_found", f"no campaign {campaign_id!r}")
    return current


def list_sync(tx: Transaction) -> list[CampaignRow]:
    rows = tx.fetch_all(f"SELECT {COLUMNS} FROM campaigns ORDER BY created_at, id")
    return [row_to_campaign(r) for r in rows]


def versions_sync(tx: Transaction, campaign_id: str) -> list[dict[str, Any]]:
    """Every version of a campaign: number, when and by whom it was applied."""
    return [
        {"version": row[0], "applied_at": row[1], "applied_by": row[2]}
        for row in tx.fetch_all(
            "SELECT version, applied_at, applied_by FROM campaign_versions"
            " WHERE campaign_id = :id ORDER BY version",
            {"id": campaign_id},
        )
    ]


async def get(db: Database, campaign_id: str) -> CampaignRow:
    return await db.run(lambda tx: require(tx, campaign_id), write=False)


async def list_all(db: Database) -> list[CampaignRow]:
    return await db.run(list_sync, write=False)


def _started(tx: Transaction, campaign_id: str) -> bool:
    return (
        tx.fetch_one("SELECT 1 FROM runs WHERE campaign_id = :id", {"id": campaign_id}) is not None
    )


async def apply(db: Database, spec: CampaignSpec, *, by: str, now: float) -> dict[str, Any]:
    """Create a draft, or add a version to a campaign that has not started."""
    data = spec.to_dict()
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))

    def work(tx: Transaction) -> dict[str, Any]:
        current = get_sync(tx, spec.id)
        if current is None:
            tx.execute(
                "INSERT INTO campaigns (id, version, state, spec, created_at, updated_at)"
                " VALUES (?, 1, 'draft', ?, ?, ?)",
                (spec.id, text, now, now),
            )
            version, created = 1, True
        else:
            if current.state in FINAL or _started(tx, spec.id) or current.state == "running":
                raise CampaignError(
                    "conflict",
                    f"campaign {spec.id!r} has started ({current.state}); apply it under a new id",
                )
            if json.dumps(current.spec_dict, sort_keys=True, separators=(",", ":")) == text:
                return {"id": spec.id, "version": current.version, "changed": False}
            version, created = current.version + 1, False
            next_run = _first_run_at(spec, now) if current.state == "scheduled" else None
            tx.execute(
                "UPDATE campaigns SET version = ?, spec = ?, updated_at = ?,"
                " next_run_at = coalesce(?, next_run_at) WHERE id = ?",
                (version, text, now, next_run, spec.id),
            )
        tx.execute(
            "INSERT INTO campaign_versions (campaign_id, version, spec, applied_at, applied_by)"
            " VALUES (?, ?, ?, ?, ?)",
            (spec.id, version, text, now, by),
        )
        return {"id": spec.id, "version": version, "changed": True, "created": created}

    return await db.run(work)


def _first_run_at(spec: CampaignSpec, now: float) -> float:
    start = spec.schedule.start
    return now if start is None else max(start.timestamp(), now)


async def launch(db: Database, campaign_id: str, *, now: float, pilot: str | None) -> CampaignRow:
    def work(tx: Transaction) -> None:
        current = get_sync(tx, campaign_id)
        if current is None:
            raise CampaignError("not_found", f"no campaign {campaign_id!r}")
        if current.state != "draft":
            raise CampaignError(
                "conflict", f"campaign {campaign_id!r} is {current.state}, not draft"
            )
        end = current.spec.schedule.end
        if end is not None and end.timestamp() <= now:
            raise CampaignError("conflict", "the campaign's schedule.end has passed")
        first = _first_run_at(current.spec, now)
        state = "running" if first <= now else "scheduled"
        if current.held_by is not None:
            state = "paused"  # held by an operator before the launch: until resumed
        tx.execute(
            "UPDATE campaigns SET state = ?, next_run_at = ?, pilot = ?, launched_at = ?,"
            " paused_reason = CASE WHEN held_by IS NULL THEN NULL ELSE ? END,"
            " paused_by = held_by, paused_at = held_at, updated_at = ? WHERE id = ?",
            (state, first, pilot, now, OPERATOR, now, campaign_id),
        )

    await db.run(work)
    return await get(db, campaign_id)


def pause_sync(
    tx: TxLike,
    campaign_id: str,
    reason: str,
    *,
    now: float,
    until: float | None = None,
    by: str = "ledger",
) -> bool:
    """Pause a running or scheduled campaign (``by``: who or what pauses it); emits
    ``campaign.paused``. A paused campaign is left as it is."""
    tx = as_tx(tx)
    cur = tx.execute(
        "UPDATE campaigns SET state = 'paused', paused_reason = ?, paused_until = ?,"
        " paused_by = ?, paused_at = ?, updated_at = ? WHERE id = ?"
        " AND state IN ('running', 'scheduled')",
        (reason, until, by, now, now, campaign_id),
    )
    if cur:
        enqueue_sync(
            tx,
            "campaign.paused",
            {"campaign_id": campaign_id, "reason": reason, "until": until, "by": by},
            now=now,
        )
    return bool(cur)


async def pause(db: Database, campaign_id: str, *, now: float, by: str = OPERATOR) -> None:
    """An operator's pause, in any state that is not final (a held draft is launched
    paused).

    It holds the campaign until an operator's :func:`resume`: a campaign already
    paused by a cap, a pilot, an empty provider or an open circuit keeps that
    reason too, and no automatic resume (the next local day, the circuit closing)
    makes it run while the hold is on.
    """

    def work(tx: Transaction) -> None:
        current = get_sync(tx, campaign_id)
        if current is None:
            raise CampaignError("not_found", f"no campaign {campaign_id!r}")
        if current.state in FINAL:
            raise CampaignError(
                "conflict",
                f"campaign {campaign_id!r} is {current.state}; it cannot be paused",
            )
        if current.held_by is not None:
            raise CampaignError(
                "conflict", f"campaign {campaign_id!r} is already paused by {current.held_by}"
            )
        tx.execute(
            "UPDATE campaigns SET held_by = ?, held_at = ?, updated_at = ? WHERE id = ?",
            (by, now, now, campaign_id),
        )
        if current.state == "draft":
            return  # held: it is launched paused
        if current.state == "paused":
            enqueue_sync(
                tx,
                "campaign.paused",
                {"campaign_id": campaign_id, "reason": OPERATOR, "until": None, "by": by},
                now=now,
            )
        else:
            pause_sync(tx, campaign_id, OPERATOR, now=now, by=by)

    await db.run(work)


def resume_sync(tx: TxLike, campaign_id: str, *, now: float, operator: bool = False) -> bool:
    """Back to running (or scheduled when its first run is still ahead); after a pilot
    its held targets are released. False when nothing resumed.

    An automatic resume (``operator=False``: the next local day, a circuit closed
    again) of a campaign an operator holds only lifts the automatic reason; the
    campaign stays paused for the operator. ``operator=True`` lifts the hold too.
    """
    tx = as_tx(tx)
    current = get_sync(tx, campaign_id)
    if current is None or current.state != "paused":
        return False
    if current.held_by is not None and not operator:
        tx.execute(
            "UPDATE campaigns SET paused_reason = ?, paused_until = NULL, paused_by = held_by,"
            " paused_at = held_at, updated_at = ? WHERE id = ?",
            (OPERATOR, now, campaign_id),
        )
        return False
    started = _started(tx, campaign_id)
    state = "running" if started or (current.next_run_at or 0) <= now else "scheduled"
    pilot_done = current.paused_reason == "pilot"
    tx.execute(
        "UPDATE campaigns SET state = ?, paused_reason = NULL, paused_until = NULL,"
        " paused_by = NULL, paused_at = NULL, held_by = NULL, held_at = NULL,"
        " pilot = CASE WHEN ? THEN NULL ELSE pilot END, updated_at = ? WHERE id = ?",
        (state, pilot_done, now, campaign_id),
    )
    if pilot_done:
        tx.execute(
            "UPDATE run_targets SET status = 'pending' WHERE status = 'held' AND run_id IN"
            " (SELECT id FROM runs WHERE campaign_id = ? AND state IN ('pilot', 'running'))",
            (campaign_id,),
        )
        tx.execute(
            "UPDATE runs SET state = 'running' WHERE campaign_id = ? AND state = 'pilot'",
            (campaign_id,),
        )
    if started and current.next_run_at is None and active_run_sync(tx, campaign_id) is None:
        last = tx.fetch_value("SELECT max(id) FROM runs WHERE campaign_id = ?", (campaign_id,))
        complete_sync(tx, campaign_id, last, now=now)
    return True


async def resume(db: Database, campaign_id: str, *, now: float) -> None:
    """An operator's resume: lifts the operator's hold and any automatic pause."""

    def work(tx: Transaction) -> None:
        current = get_sync(tx, campaign_id)
        if current is None:
            raise CampaignError("not_found", f"no campaign {campaign_id!r}")
        if current.state == "draft" and current.held_by is not None:
            tx.execute(
                "UPDATE campaigns SET held_by = NULL, held_at = NULL, updated_at = ? WHERE id = ?",
                (now, campaign_id),
            )
            return
        if current.state != "paused":
            raise CampaignError(
                "conflict", f"campaign {campaign_id!r} is {current.state}, not paused"
            )
        resume_sync(tx, campaign_id, now=now, operator=True)

    await db.run(work)


async def stop(db: Database, campaign_id: str, *, now: float) -> None:
    """Stop for good: targets not yet decided are refused with reason ``stopped``."""

    def work(tx: Transaction) -> None:
        current = get_sync(tx, campaign_id)
        if current is None:
            raise CampaignError("not_found", f"no campaign {campaign_id!r}")
        if current.state in FINAL:
            raise CampaignError("conflict", f"campaign {campaign_id!r} is already {current.state}")
        tx.execute(
            "UPDATE run_targets SET status = 'refused', reason = 'stopped', decided_at = ?"
            " WHERE status IN ('pending', 'held') AND run_id IN"
            " (SELECT id FROM runs WHERE campaign_id = ?)",
            (now, campaign_id),
        )
        tx.execute(
            "UPDATE runs SET state = 'stopped', finished_at = ? WHERE campaign_id = ?"
            " AND state IN ('pilot', 'running')",
            (now, campaign_id),
        )
        tx.execute(
            "UPDATE campaigns SET state = 'stopped', next_run_at = NULL, updated_at = ?"
            " WHERE id = ?",
            (now, campaign_id),
        )

    await db.run(work)


def active_run_sync(tx: TxLike, campaign_id: str) -> tuple[int, str] | None:
    tx = as_tx(tx)
    row = tx.fetch_one(
        "SELECT id, state FROM runs WHERE campaign_id = ? AND state IN ('pilot', 'running')"
        " ORDER BY id DESC LIMIT 1",
        (campaign_id,),
    )
    return None if row is None else (row[0], row[1])


def finish_run_if_done_sync(
    tx: TxLike, campaign: CampaignRow, run_id: int, *, now: float
) -> str | None:
    """Close a run with nothing left to decide; pause after a pilot; complete the campaign.

    Returns "completed", "pilot_done", "next_run" or None (still work left).
    """
    tx = as_tx(tx)
    left = tx.fetch_all(
        "SELECT status, count(*) FROM run_targets WHERE run_id = ? AND status IN"
        " ('pending', 'held') GROUP BY status",
        (run_id,),
    )
    counts = {r[0]: r[1] for r in left}
    if counts.get("pending"):
        return None
    if tx.fetch_one(
        "SELECT 1 FROM grants WHERE run_id = ? AND state = 'reserved' LIMIT 1", (run_id,)
    ):
        return None  # rewards still being issued by a provider outside the database
    if campaign.spec.kind == "live_action":
        end = campaign.spec.schedule.end
        if end is None or end.timestamp() > now:
            return None  # a live run stays open for triggers until the campaign ends
    if counts.get("held"):
        if campaign.state == "running":
            pause_sync(tx, campaign.id, "pilot", now=now)
            return "pilot_done"
        return None
    tx.execute("UPDATE runs SET state = 'completed', finished_at = ? WHERE id = ?", (now, run_id))
    nxt = next_recurrence(campaign.spec, now)
    if nxt is not None:
        tx.execute(
            "UPDATE campaigns SET next_run_at = ?, updated_at = ? WHERE id = ?",
            (nxt, now, campaign.id),
        )
        return "next_run"
    # A campaign paused by a cap stays paused (the operator sees why); it completes
    # when resumed or stopped.
    complete_sync(tx, campaign.id, run_id, now=now)
    return "completed"


def complete_sync(tx: TxLike, campaign_id: str, run_id: int, *, now: float) -> bool:
    tx = as_tx(tx)
    cur = tx.execute(
        "UPDATE campaigns SET state = 'completed', next_run_at = NULL, updated_at = ?"
        " WHERE id = ? AND state = 'running'",
        (now, campaign_id),
    )
    if cur:
        enqueue_sync(
            tx,
            "campaign.completed",
            {"campaign_id": campaign_id, "run_id": run_id},
            now=now,
            event_id=f"campaign.completed:{campaign_id}:{run_id}",
        )
    return bool(cur)


def next_recurrence(spec: CampaignSpec, now: float) -> float | None:
    """The next daily run after ``now``, unless the schedule has ended."""
    rec = spec.schedule.recurring
    if rec is None:
        return None
    from zoneinfo import ZoneInfo

    from promod.campaigns.plan import next_local

    nxt = next_local(now + 1, rec.at, ZoneInfo(spec.timezone))
    end = spec.schedule.end
    if end is not None and nxt >= end.timestamp():
        return None
    return nxt
