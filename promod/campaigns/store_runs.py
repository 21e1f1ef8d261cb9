"""Runs in the store: the target list of one execution of a campaign, with due times.

``plan_targets`` computes, without writing, who a run would target: the segment
(or custom list) as of the run's time, ranked by ``caps.audience_rank`` or by a
seeded random order, cut at the audience cap, each with the moment their reward
is due (``immediate``, each customer's ``local_time``, or their ``best_time``).
``create_run_sync`` writes it as a run; ``campaign simulate`` uses the same plan::

    plan = plan_targets(tx, "winback", spec, now=now, seed=run_seed("winback", 1, 1))
"""

from __future__ import annotations

import json
import random
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from promod.campaigns.plan import Plan, next_local, pilot_size, rank_key, run_seed, zone_or
from promod.campaigns.segments import compile_segment
from promod.campaigns.spec import CampaignSpec
from promod.store.seam import TxLike, as_tx

__all__ = [
    "create_run_sync",
    "due_times",
    "next_seq_sync",
    "plan_targets",
    "rank",
    "segment_ids",
]

# Customers looked up per statement.
CHUNK = 50_000


def segment_ids(tx: TxLike, spec: CampaignSpec, now: float) -> list[str]:
    """The customers a campaign's segment (or list) selects as of ``now``, sorted."""
    tx = as_tx(tx)
    if spec.kind == "custom_list" and spec.list_name is not None:
        sql = "SELECT DISTINCT customer_id FROM custom_lists WHERE name = ?"
        params: list[Any] = [spec.list_name]
        if spec.segment is not None:
            seg_sql, seg_params = compile_segment(spec.segment, as_of=int(now))
            sql += f" AND customer_id IN ({seg_sql})"
            params += seg_params
    else:
        if spec.segment is None:
            return []
        sql, params = compile_segment(spec.segment, as_of=int(now))
    return sorted(row[0] for row in tx.fetch_all(sql, params))


def rank(tx: TxLike, spec: CampaignSpec, ids: list[str], seed: int) -> list[str]:
    """Order ``ids``: by the audience rank attribute, ties (and no rank) in seeded random order."""
    tx = as_tx(tx)
    order = list(ids)
    random.Random(seed).shuffle(order)
    ar = spec.caps.audience_rank
    if ar is None or ar.attr is None:
        return order
    values: dict[str, Any] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = tx.dialect.array(ids[start : start + CHUNK])
        for row in tx.iterate(
            f"SELECT id, attributes FROM customers WHERE {tx.dialect.in_array('id', 'ids')}",
            {"ids": chunk},
        ):
            values[row[0]] = _attribute(row[1], ar.attr)
    present = [c for c in order if values.get(c) is not None]
    missing = [c for c in order if values.get(c) is None]
    present.sort(key=lambda c: rank_key(values[c])[1], reverse=ar.descending)
    return present + missing  # stable sort keeps the random order among ties


def _attribute(text: str | None, name: str) -> Any:
    """The value of attribute ``name`` in a customer's attributes (JSON), None if absent."""
    if not text:
        return None
    value = json.loads(text).get(name)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return value


def due_times(tx: TxLike, spec: CampaignSpec, ids: list[str], start: float) -> list[float]:
    """When each customer's reward is due, per the campaign's delivery."""
    tx = as_tx(tx)
    delivery = spec.schedule.delivery
    if delivery == "immediate" or not ids:
        return [start] * len(ids)
    campaign_zone = ZoneInfo(spec.timezone)
    at = spec.schedule.local_time or time(10, 0)
    zones: dict[str, str | None] = {}
    best: dict[str, int] = {}
    for chunk_start in range(0, len(ids), CHUNK):
        chunk = tx.dialect.array(ids[chunk_start : chunk_start + CHUNK])
        zones.update(
            (row[0], row[1])
            for row in tx.fetch_all(
                f"SELECT id, timezone FROM customers WHERE {tx.dialect.in_array('id', 'ids')}",
                {"ids": chunk},
            )
        )
        if delivery == "best_time":
            best.update(_best_hours(tx, chunk, int(start), zones, campaign_zone))
    cache: dict[tuple[str | None, int | None], float] = {}
    out = []
    for cid in ids:
        hour = best.get(cid)
        key = (zones.get(cid), hour)
        due = cache.get(key)
        if due is None:
            zone = zone_or(zones.get(cid), campaign_zone)
            due = next_local(start, at if hour is None else time(hour, 0), zone)
            cache[key] = due
        out.append(due)
    return out


def _best_hours(
    tx: TxLike,
    chunk: Any,
    until: int,
    zones: dict[str, str | None],
    campaign_zone: ZoneInfo,
) -> dict[str, int]:
    """The local hour at which each customer's past events cluster (ties: the earliest).

    The hour is read on the customer's own clock (the campaign's zone when they have
    none), DST included: an event at 18:30 UTC is at 19 in a Berlin winter and at 20
    in a Berlin summer. Events are counted per quarter hour in SQL; every zone's
    offset is a whole number of quarter hours, so the local hour of a quarter's start
    is that of every event in it.
    """
    tx = as_tx(tx)
    tallies: dict[str, dict[int, int]] = {}
    hour_of: dict[tuple[str | None, int], int] = {}
    for cid, quarter, n in tx.fetch_all(
        "SELECT customer_id, ts / 900, count(*) FROM events"
        f" WHERE {tx.dialect.in_array('customer_id', 'ids')} AND ts <= :until"
        " GROUP BY customer_id, ts / 900",
        {"ids": chunk, "until": until},
    ):
        name = zones.get(cid)
        hour = hour_of.get((name, quarter))
        if hour is None:
            hour = datetime.fromtimestamp(quarter * 900, zone_or(name, campaign_zone)).hour
            hour_of[(name, quarter)] = hour
        hours = tallies.setdefault(cid, {})
        hours[hour] = hours.get(hour, 0) + n
    return {cid: min(hours, key=lambda h: (-hours[h], h)) for cid, hours in tallies.items()}


def plan_targets(
    tx: TxLike,
    campaign_id: str,
    spec: CampaignSpec,
    *,
    now: float,
    seed: int,
    pilot: str | None = None,
) -> Plan:
    """Who a run started at ``now`` targets, in what order, when, and who is cut."""
    tx = as_tx(tx)
    ids = segment_ids(tx, spec, now)
    ordered = rank(tx, spec, ids, seed)
    plan = Plan(targeted=len(ordered))
    plan.customer_ids = ordered
    plan.due_at = due_times(tx, spec, ordered, now)
    plan.status = ["pending"] * len(ordered)
    plan.reason = [None] * len(ordered)
    audience = spec.caps.audience
    if audience is not None:
        # Rank decides who gets in: count the customers not yet granted by this
        # campaign in rank order; those past the remaining audience are cut now.
        used = tx.fetch_value(
            "SELECT coalesce(sum(customers), 0) FROM cap_counters"
            " WHERE scope = ? AND period = 'lifetime'",
            (f"campaign:{campaign_id}",),
        )
        earlier = {
            row[0]
            for row in tx.fetch_all(
                "SELECT customer_id FROM customer_caps WHERE campaign_id = ?", (campaign_id,)
            )
        }
        room = max(audience - int(used), 0)
        for i, cid in enumerate(ordered):
            if cid in earlier:
                continue
            if room > 0:
                room -= 1
            else:
                plan.status[i] = "refused"
                plan.reason[i] = "audience_cap"
    if pilot:
        eligible = [i for i, s in enumerate(plan.status) if s == "pending"]
        size = pilot_size(pilot, len(eligible))
        chosen = set(random.Random(seed ^ 0x5EED).sample(eligible, size))
        for i in eligible:
            if i not in chosen:
                plan.status[i] = "held"
    return plan


def next_seq_sync(tx: TxLike, campaign_id: str) -> int:
    """The number the campaign's next run gets (1, 2, 3 ... per campaign)."""
    return int(
        as_tx(tx).fetch_value(
            "SELECT coalesce(max(seq), 0) + 1 FROM runs WHERE campaign_id = :id",
            {"id": campaign_id},
        )
    )


def create_run_sync(
    tx: TxLike,
    campaign_id: str,
    version: int,
    spec: CampaignSpec,
    *,
    now: float,
    pilot: str | None = None,
    clearance_deadline: float | None = None,
) -> int:
    """Snapshot the target list into a new run; return the run id.

    A live-action campaign's run starts empty: its triggers add targets as they
    fire. With ``clearance_deadline`` the run waits for the site's approval: its
    targets are ``awaiting`` and the run is in state ``clearance`` until then; due
    times count from the deadline (the campaign's start).
    """
    tx = as_tx(tx)
    seq = next_seq_sync(tx, campaign_id)
    seed = run_seed(campaign_id, version, seq)
    if spec.kind == "live_action":
        plan = Plan()
    else:
        start = now if clearance_deadline is None else clearance_deadline
        plan = plan_targets(tx, campaign_id, spec, now=start, seed=seed, pilot=pilot)
    if clearance_deadline is not None:
        state = "clearance"
        plan.status = ["awaiting" if s == "pending" else s for s in plan.status]
    else:
        state = "pilot" if pilot else "running"
    run_id = int(
        tx.fetch_value(
            "INSERT INTO runs (campaign_id, seq, version, state, as_of, started_at, seed,"
            " targeted, clearance_deadline) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (campaign_id, seq, version, state, now, now, seed, plan.targeted, clearance_deadline),
        )
    )
    tx.executemany(
        "INSERT INTO run_targets (run_id, customer_id, rank, due_at, status, reason, decided_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            (run_id, cid, i, due, status, reason, now if status == "refused" else None)
            for i, (cid, due, status, reason) in enumerate(
                zip(plan.customer_ids, plan.due_at, plan.status, plan.reason, strict=True)
            )
        ),
    )
    return run_id
