"""The dry run: what a campaign would grant, run by run and day by day, without writing anything.

It plans each run exactly as the scheduler will (same segment, same seeded order,
same audience cut, same due times) and walks the targets through the same
:class:`~promod.ledger.grants.Decider` the ledger uses, moving to the next local
day whenever a daily cap binds, so its projection matches the real run on the
same data. A recurring campaign is projected run after run — each one starting
at the next recurrence after the one before has finished, as the scheduler does
— up to its ``schedule.end`` or the horizon (``DEFAULT_HORIZON`` unless given),
with caps, per-customer limits and inventory carried from run to run. A campaign
that needs clearance grants nobody the site has not approved: ``granted`` and
``spend`` are what it grants when the site answers nobody (none, unless
``on_timeout = "approve"``), and ``if_all_approved`` what it grants when the
site approves everyone — the case its funnel, days and runs describe::

    result = await db.run(
        lambda tx: simulate_sync(tx, campaign, job, now, horizon=30 * 86400), write=False
    )
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass, field
from typing import Any

from promod.campaigns.plan import run_seed
from promod.campaigns.spec import CampaignSpec, currency_exponent
from promod.campaigns.store import CampaignRow, next_recurrence
from promod.campaigns.store_runs import next_seq_sync, plan_targets
from promod.customers.store import consenting_sync
from promod.ledger.caps import CapBook
from promod.ledger.grants import (
    Decider,
    GrantJob,
    _inventory,
    candidates_sync,
    local_day,
    next_local_midnight,
    refusal_reason,
)
from promod.store.seam import Transaction, TxLike, as_tx, legacy_connection
from promod.units import format_duration, format_money

MAX_DAYS = 3660
DEFAULT_HORIZON = 30 * 86400.0  # how far ahead a recurring campaign's runs are projected
MAX_HORIZON = 366 * 86400.0


@dataclass
class _Projection:
    """What the runs projected so far add up to (shared from one run to the next)."""

    book: CapBook
    inventory: dict[str, int | None]
    snapshot_refused: Tally[str] = field(default_factory=Tally)  # cut at the run's snapshot
    refused: Tally[str] = field(default_factory=Tally)  # decided at grant time
    grants: dict[str, list[float]] = field(default_factory=dict)  # customer -> when granted
    per_day: dict[str, list[int]] = field(default_factory=dict)
    targeted: int = 0
    awaiting: int = 0  # targets sent for clearance (the snapshot's pending ones)
    with_consent: int | None = None
    granted: int = 0
    spend: int = 0
    first_binding: dict[str, Any] | None = None
    stopped: dict[str, Any] | None = None
    days: int = 0


def needs_clearance(spec: CampaignSpec) -> bool:
    """Whether each run waits for the site's approval (as the scheduler decides)."""
    return spec.clearance.required and spec.kind != "live_action"


def simulate_sync(
    tx: TxLike,
    campaign: CampaignRow,
    job: GrantJob,
    now: float,
    *,
    horizon: float | None = None,
) -> dict[str, Any]:
    """Project the campaign's runs from ``now``; ``horizon`` (seconds) bounds recurring ones."""
    tx = as_tx(tx)
    spec = campaign.spec
    start = now if spec.schedule.start is None else max(spec.schedule.start.timestamp(), now)
    seq = next_seq_sync(tx, campaign.id)
    conn = legacy_connection(tx)  # the ledger's functions still take the connection
    exp = currency_exponent(spec.currency)
    rewards = [spec.reward, *([spec.reward.fallback] if spec.reward.fallback else [])]
    book = CapBook(
        job.limits(), local_day(start, spec.timezone), local_day(start, job.site_timezone)
    )
    book.load(conn, [r.provider for r in rewards])
    projection = _Projection(book, _inventory(conn, job))
    consent = None
    if spec.notify is not None and spec.notify.consent:
        consent = consenting_sync(tx, spec.notify.consent)
    if consent is not None:
        projection.with_consent = 0

    recurring = spec.schedule.recurring is not None
    until: float | None = None
    if recurring:
        until = start + (DEFAULT_HORIZON if horizon is None else horizon)
        if spec.schedule.end is not None:
            until = min(until, spec.schedule.end.timestamp())
    runs: list[dict[str, Any]] = []
    run_at: float | None = start
    while run_at is not None:
        before = (projection.granted, projection.spend)
        targeted, finished = _run(tx, campaign, job, projection, run_at, seq, consent)
        runs.append(
            {
                "run": len(runs) + 1,
                "start": run_at,
                "targeted": targeted,
                "granted": projection.granted - before[0],
                "spend": format_money(projection.spend - before[1], exp),
            }
        )
        if projection.stopped is not None or not recurring or len(runs) >= 1000:
            break
        run_at = next_recurrence(spec, finished)
        if run_at is not None and until is not None and run_at > until:
            run_at = None
        seq += 1

    refused = projection.snapshot_refused + projection.refused
    clearance = needs_clearance(spec)
    approved = spec.clearance.on_timeout == "approve"
    granted, spend = projection.granted, projection.spend
    result: dict[str, Any] = {
        "id": campaign.id,
        "start": start,
        "targeted": projection.targeted,
        "with_consent": projection.with_consent,
        "funnel": _funnel(projection, clearance),
        "granted": granted if not clearance or approved else 0,
        "refused": dict(refused.most_common()),
        "spend": format_money(spend if not clearance or approved else 0, exp),
        "currency": spec.currency,
        "binding_cap": projection.first_binding,
        "stopped_by": projection.stopped,
        "days": len(projection.per_day),
        "per_day": [
            {"day": d, "granted": n, "spend": format_money(v, exp)}
            for d, (n, v) in sorted(projection.per_day.items())
        ],
        "runs": runs,
        "horizon": None
        if until is None
        else {"until": until, "span": format_duration(until - start)},
    }
    if clearance:
        result["clearance"] = {
            "required": True,
            "on_timeout": spec.clearance.on_timeout,
            "awaiting_approval": projection.awaiting,
            "granted_if_unanswered": result["granted"],
        }
        result["if_all_approved"] = {"granted": granted, "spend": format_money(spend, exp)}
    return result


def _run(
    tx: Transaction,
    campaign: CampaignRow,
    job: GrantJob,
    projection: _Projection,
    start: float,
    seq: int,
    consent: set[str] | None,
) -> tuple[int, float]:
    """Project one run starting at ``start``; return (targeted, when it has finished)."""
    spec = campaign.spec
    book = projection.book
    conn = legacy_connection(tx)
    plan = plan_targets(
        tx, campaign.id, spec, now=start, seed=run_seed(campaign.id, campaign.version, seq)
    )
    projection.targeted += plan.targeted
    projection.snapshot_refused.update(r for r in plan.reason if r)
    if consent is not None and projection.with_consent is not None:
        projection.with_consent += sum(1 for c in plan.customer_ids if c in consent)
    order = sorted(
        (i for i, s in enumerate(plan.status) if s == "pending"),
        key=lambda i: (plan.due_at[i], i),
    )
    projection.awaiting += len(order)
    ids = [plan.customer_ids[i] for i in order]
    per_customer: dict[str, int] = {}
    recent: dict[str, int] = {}
    for chunk in range(0, len(ids), 50_000):
        pc, rc = candidates_sync(conn, job, ids[chunk : chunk + 50_000], start)
        per_customer.update(pc)
        recent.update(rc)
    # Grants projected by the runs before this one count as the stored ones do.
    since = None if job.frequency is None else start - job.frequency[1] * 86400
    for cid, times in projection.grants.items():
        per_customer[cid] = per_customer.get(cid, 0) + len(times)
        if since is not None:
            recent[cid] = recent.get(cid, 0) + sum(1 for t in times if t >= since)
    decider = Decider(job, book, projection.inventory, per_customer, recent)

    clock = start
    dated = None  # the clock the book's days were last set for
    position = 0
    while position < len(order):
        i = order[position]
        cid = plan.customer_ids[i]
        clock = max(clock, plan.due_at[i])
        if clock != dated:
            book.set_day(conn, local_day(clock, spec.timezone), local_day(clock, job.site_timezone))
            dated = clock
        reward, reason, halt = decider.decide(cid)
        if halt is not None:
            binding = {"cap": refusal_reason(halt), "day": book.day, "kind": halt.kind}
            if projection.first_binding is None:
                projection.first_binding = binding
            if halt.kind == "daily" and halt.limit != "inventory":
                tz = job.site_timezone if halt.cap.startswith("provider:") else spec.timezone
                clock = next_local_midnight(clock, tz)
                projection.days += 1
                if projection.days > MAX_DAYS:
                    projection.stopped = {**binding, "reason": f"more than {MAX_DAYS} days"}
                    break
                continue
            projection.stopped = binding
            projection.refused[refusal_reason(halt)] += len(order) - position
            break
        if reward is None:
            assert reason is not None
            projection.refused[reason] += 1
        else:
            projection.granted += 1
            projection.grants.setdefault(cid, []).append(clock)
            value = reward.value_minor or 0
            projection.spend += value
            bucket = projection.per_day.setdefault(book.day, [0, 0])
            bucket[0] += 1
            bucket[1] += value
        position += 1
    return plan.targeted, clock


FUNNEL_ORDER = ("audience_cap", "per_customer", "frequency")


def _funnel(projection: _Projection, clearance: bool) -> list[dict[str, Any]]:
    """Audience after the segment, the snapshot's cut, clearance, each filter, the caps."""
    steps = [{"step": "segment", "audience": projection.targeted}]
    left = projection.targeted
    cut = projection.snapshot_refused.get("audience_cap", 0)
    if cut:
        left -= cut
        steps.append({"step": "after audience_cap", "audience": left})
    if clearance:
        steps.append({"step": "sent for clearance", "audience": left})
    refused = projection.refused
    for reason in FUNNEL_ORDER:
        if refused.get(reason):
            left -= refused[reason]
            steps.append({"step": f"after {reason}", "audience": left})
    eligibility = sum(n for r, n in refused.items() if r.startswith("eligibility:"))
    if eligibility:
        left -= eligibility
        steps.append({"step": "after eligibility", "audience": left})
    last = "granted if all are approved (after caps)" if clearance else "granted (after caps)"
    steps.append({"step": last, "audience": projection.granted})
    return steps
