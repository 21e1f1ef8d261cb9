"""The dry run: what a campaign would grant, day by day, without writing anything.

It plans the run exactly as the scheduler will (same segment, same seeded order,
same audience cut, same due times) and walks the targets through the same
:class:`~promod.ledger.grants.Decider` the ledger uses, moving to the next local
day whenever a daily cap binds, so its projection matches the real run on the
same data::

    result = await db.run_sync(lambda conn: simulate_sync(conn, campaign, job, now), write=False)
"""

from __future__ import annotations

import sqlite3
from collections import Counter as Tally
from typing import Any

from promod.campaigns.runs import plan_targets, run_seed
from promod.campaigns.spec import currency_exponent
from promod.campaigns.store import CampaignRow
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
from promod.units import format_money

MAX_DAYS = 3660


def simulate_sync(
    conn: sqlite3.Connection, campaign: CampaignRow, job: GrantJob, now: float
) -> dict[str, Any]:
    spec = campaign.spec
    start = now if spec.schedule.start is None else max(spec.schedule.start.timestamp(), now)
    (seq,) = conn.execute(
        "SELECT coalesce(max(seq), 0) + 1 FROM runs WHERE campaign_id = ?", (campaign.id,)
    ).fetchone()
    plan = plan_targets(
        conn, campaign.id, spec, now=start, seed=run_seed(campaign.id, campaign.version, seq)
    )
    exp = currency_exponent(spec.currency)
    refused: Tally[str] = Tally(r for r in plan.reason if r)
    order = sorted(
        (i for i, s in enumerate(plan.status) if s == "pending"),
        key=lambda i: (plan.due_at[i], i),
    )
    ids = [plan.customer_ids[i] for i in order]
    per_customer: dict[str, int] = {}
    recent: dict[str, int] = {}
    for chunk in range(0, len(ids), 50_000):
        pc, rc = candidates_sync(conn, job, ids[chunk : chunk + 50_000], start)
        per_customer.update(pc)
        recent.update(rc)
    rewards = [spec.reward, *([spec.reward.fallback] if spec.reward.fallback else [])]
    book = CapBook(
        job.limits(), local_day(start, spec.timezone), local_day(start, job.site_timezone)
    )
    book.load(conn, [r.provider for r in rewards])
    decider = Decider(job, book, _inventory(conn, job), per_customer, recent)

    with_consent = None
    if spec.notify is not None and spec.notify.consent:
        granted_consent = {
            row[0]
            for row in conn.execute(
                "SELECT customer_id FROM customer_consents WHERE consent = ? AND granted = 1",
                (spec.notify.consent,),
            )
        }
        with_consent = sum(1 for c in plan.customer_ids if c in granted_consent)

    per_day: dict[str, list[int]] = {}
    first_binding: dict[str, Any] | None = None
    stopped: dict[str, Any] | None = None
    clock = start
    days = 0
    granted = spend = 0
    position = 0
    while position < len(order):
        i = order[position]
        cid = plan.customer_ids[i]
        clock = max(clock, plan.due_at[i])
        book.set_day(conn, local_day(clock, spec.timezone), local_day(clock, job.site_timezone))
        reward, reason, halt = decider.decide(cid)
        if halt is not None:
            binding = {"cap": refusal_reason(halt), "day": book.day, "kind": halt.kind}
            if first_binding is None:
                first_binding = binding
            if halt.kind == "daily" and halt.limit != "inventory":
                tz = job.site_timezone if halt.cap.startswith("provider:") else spec.timezone
                clock = next_local_midnight(clock, tz)
                days += 1
                if days > MAX_DAYS:
                    stopped = {**binding, "reason": f"more than {MAX_DAYS} days"}
                    break
                continue
            stopped = binding
            rest = len(order) - position
            refused[refusal_reason(halt)] += rest
            break
        if reward is None:
            assert reason is not None
            refused[reason] += 1
        else:
            granted += 1
            value = reward.value_minor or 0
            spend += value
            bucket = per_day.setdefault(book.day, [0, 0])
            bucket[0] += 1
            bucket[1] += value
        position += 1

    return {
        "id": campaign.id,
        "start": start,
        "targeted": plan.targeted,
        "with_consent": with_consent,
        "funnel": _funnel(plan.targeted, refused, granted),
        "granted": granted,
        "refused": dict(refused.most_common()),
        "spend": format_money(spend, exp),
        "currency": spec.currency,
        "binding_cap": first_binding,
        "stopped_by": stopped,
        "days": len(per_day),
        "per_day": [
            {"day": d, "granted": n, "spend": format_money(v, exp)}
            for d, (n, v) in sorted(per_day.items())
        ],
    }


FUNNEL_ORDER = ("audience_cap", "per_customer", "frequency")


def _funnel(targeted: int, refused: Tally[str], granted: int) -> list[dict[str, Any]]:
    """Audience after the segment, then after each filter, then after the caps."""
    steps = [{"step": "segment", "audience": targeted}]
    left = targeted
    for reason in FUNNEL_ORDER:
        if refused.get(reason):
            left -= refused[reason]
            steps.append({"step": f"after {reason}", "audience": left})
    eligibility = sum(n for r, n in refused.items() if r.startswith("eligibility:"))
    if eligibility:
        left -= eligibility
        steps.append({"step": "after eligibility", "audience": left})
    steps.append({"step": "granted (after caps)", "audience": granted})
    return steps
