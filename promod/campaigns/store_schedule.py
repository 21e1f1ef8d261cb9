"""The campaign timeline in the store: starting due runs and the next moment to wake.

The scheduler actor (``promod/actors/scheduler.py``) runs these in one transaction
each (docs/architecture.md, "The store seam")::

    started = await db.run(lambda tx: start_due_runs_sync(tx, now=now, on_error=log_it))
    next_wake = await db.run(lambda tx: next_wake_sync(tx, now=now), write=False)
"""

from __future__ import annotations

from collections.abc import Callable

from promod.campaigns import store as campaigns
from promod.campaigns.store_runs import create_run_sync
from promod.live.engine import next_timer_sync
from promod.store.seam import Transaction

__all__ = ["MAX_CLEARANCE_LEAD", "needs_clearance", "next_wake_sync", "start_due_runs_sync"]

# Clearance leads longer than this are not looked ahead for (a week).
MAX_CLEARANCE_LEAD = 7 * 86400.0

_ACTIVE = "state IN ('scheduled', 'running') AND next_run_at IS NOT NULL"


def needs_clearance(campaign: campaigns.CampaignRow) -> bool:
    return campaign.spec.clearance.required and campaign.spec.kind != "live_action"


def start_due_runs_sync(
    tx: Transaction,
    *,
    now: float,
    on_error: Callable[[str, Exception], None] | None = None,
) -> list[tuple[str, int]]:
    """Lift pauses whose moment passed, then start every run that is due.

    Each campaign starts in a savepoint of its own: one that fails is rolled back
    alone and paused (``error:NAME``, by the scheduler), and ``on_error`` hears of it.
    Returns ``(campaign_id, run_id)`` of the runs started.
    """
    for row in tx.fetch_all(
        "SELECT id FROM campaigns WHERE state = 'paused' AND paused_until IS NOT NULL"
        " AND paused_until <= :now",
        {"now": now},
    ):
        campaigns.resume_sync(tx, row[0], now=now)
    started = []
    due = tx.fetch_all(
        f"SELECT id FROM campaigns WHERE {_ACTIVE} AND next_run_at <= :horizon",
        {"horizon": now + MAX_CLEARANCE_LEAD},
    )
    for (campaign_id,) in due:
        try:
            with tx.savepoint("start_run"):
                run = _start_one(tx, campaign_id, now)
        except Exception as exc:
            # One broken campaign must not stop the timeline: pause it, say why.
            if on_error is not None:
                on_error(campaign_id, exc)
            campaigns.pause_sync(
                tx, campaign_id, f"error:{type(exc).__name__}", now=now, by="scheduler"
            )
            continue
        if run is not None:
            started.append((campaign_id, run))
    return started


def _start_one(tx: Transaction, campaign_id: str, now: float) -> int | None:
    campaign = campaigns.get_sync(tx, campaign_id)
    if campaign is None or campaigns.active_run_sync(tx, campaign_id) is not None:
        return None
    assert campaign.next_run_at is not None
    if needs_clearance(campaign):
        # The site approves the target list before execution: snapshot it
        # ``lead`` ahead of the run's time; the clearance actor takes over.
        if campaign.next_run_at - campaign.spec.clearance.lead > now:
            return None
        run_id = create_run_sync(
            tx,
            campaign_id,
            campaign.version,
            campaign.spec,
            now=now,
            pilot=campaign.pilot,
            clearance_deadline=max(campaign.next_run_at, now),
        )
        tx.execute(
            "UPDATE campaigns SET next_run_at = NULL, updated_at = :now WHERE id = :id",
            {"now": now, "id": campaign_id},
        )
        return run_id
    if campaign.next_run_at > now:
        return None
    end = campaign.spec.schedule.end
    if end is not None and end.timestamp() <= now:
        tx.execute(
            "UPDATE campaigns SET state = 'completed', next_run_at = NULL,"
            " updated_at = :now WHERE id = :id",
            {"now": now, "id": campaign_id},
        )
        return None
    run_id = create_run_sync(
        tx, campaign_id, campaign.version, campaign.spec, now=now, pilot=campaign.pilot
    )
    tx.execute(
        "UPDATE campaigns SET state = 'running', next_run_at = NULL, updated_at = :now"
        " WHERE id = :id",
        {"now": now, "id": campaign_id},
    )
    return run_id


def next_wake_sync(tx: Transaction, now: float) -> float | None:
    """The earliest future moment the timeline has anything to do."""
    candidates: list[float] = []
    # Clearance snapshots start ``lead`` ahead of the run; live-action campaigns
    # complete when their schedule ends. Few campaigns are active: their specs
    # (parsed once per version) say which.
    for (campaign_id,) in tx.fetch_all(
        "SELECT id FROM campaigns WHERE state IN ('scheduled', 'running')"
    ):
        campaign = campaigns.get_sync(tx, campaign_id)
        if campaign is None:
            continue
        if campaign.next_run_at is not None and needs_clearance(campaign):
            start = campaign.next_run_at - campaign.spec.clearance.lead
            if start > now:
                candidates.append(start)
        end = campaign.spec.schedule.end
        if (
            campaign.state == "running"
            and campaign.spec.kind == "live_action"
            and end is not None
            and end.timestamp() > now
        ):
            candidates.append(end.timestamp())
    candidates += [
        float(row[0])
        for row in tx.fetch_all(
            "SELECT min(next_run_at) FROM campaigns WHERE state IN ('scheduled', 'running')"
            " AND next_run_at > :now"
            " UNION ALL SELECT min(paused_until) FROM campaigns WHERE state = 'paused'"
            " AND paused_until > :now"
            " UNION ALL SELECT min(t.due_at) FROM run_targets t JOIN runs r ON r.id = t.run_id"
            " JOIN campaigns c ON c.id = r.campaign_id WHERE c.state = 'running'"
            " AND r.state IN ('pilot', 'running') AND t.status = 'pending' AND t.due_at > :now",
            {"now": now},
        )
        if row[0] is not None
    ]
    live_timer = next_timer_sync(tx, now)  # live-action inaction windows
    if live_timer is not None:
        candidates.append(live_timer)
    return min(candidates) if candidates else None
