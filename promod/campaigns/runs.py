"""Runs: the target list of one execution of a campaign, in rank order, with due times.

``plan_targets`` computes, without writing, who a run would target: the segment
(or custom list) as of the run's time, ranked by ``caps.audience_rank`` or by a
seeded random order, cut at the audience cap, each with the moment their reward
is due (``immediate``, each customer's ``local_time``, or their ``best_time``).
``create_run_sync`` writes it as a run; ``campaign simulate`` uses the same plan::

    plan = plan_targets(conn, "winback", spec, now=now, seed=run_seed("winback", 1, 1))
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from promod.campaigns.segments import compile_segment
from promod.campaigns.spec import CampaignSpec
from promod.store.seam import SqliteTransaction, Transaction


@dataclass
class Plan:
    """A run's target list: customer ids in rank order with due times and outcomes."""

    customer_ids: list[str] = field(default_factory=list)
    due_at: list[float] = field(default_factory=list)
    status: list[str] = field(default_factory=list)  # pending | held | refused
    reason: list[str | None] = field(default_factory=list)
    targeted: int = 0

    def __len__(self) -> int:
        return len(self.customer_ids)


def run_seed(campaign_id: str, version: int, seq: int) -> int:
    """The random order of a run: fixed by campaign, version and run number, so a dry
    run sees the same order as the real run that follows it."""
    digest = hashlib.sha256(f"{campaign_id}:{version}:{seq}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def segment_ids(conn: sqlite3.Connection, spec: CampaignSpec, now: float) -> list[str]:
    """The customers a campaign's segment (or list) selects as of ``now``, sorted."""
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
    return sorted(row[0] for row in conn.execute(sql, params))


def _rank_key(value: Any) -> tuple[int, Any]:
    """Numbers (and decimal strings) before strings; missing last."""
    if value is None:
        return (2, 0)
    if isinstance(value, bool):
        return (0, Decimal(int(value)))
    if isinstance(value, int | float):
        return (0, Decimal(str(value)))
    try:
        return (0, Decimal(str(value)))
    except InvalidOperation:
        return (1, str(value))


def rank(conn: sqlite3.Connection, spec: CampaignSpec, ids: list[str], seed: int) -> list[str]:
    """Order ``ids``: by the audience rank attribute, ties (and no rank) in seeded random order."""
    order = list(ids)
    random.Random(seed).shuffle(order)
    ar = spec.caps.audience_rank
    if ar is None or ar.attr is None:
        return order
    values: dict[str, Any] = {}
    path = '$."' + ar.attr.replace('"', '""') + '"'
    for start in range(0, len(ids), 50_000):
        chunk = ids[start : start + 50_000]
        values.update(
            conn.execute(
                "SELECT id, json_extract(attributes, ?) FROM customers WHERE id IN"
                " (SELECT value FROM json_each(?))",
                (path, _json(chunk)),
            ).fetchall()
        )
    present = [c for c in order if values.get(c) is not None]
    missing = [c for c in order if values.get(c) is None]
    present.sort(key=lambda c: _rank_key(values[c])[1], reverse=ar.descending)
    return present + missing  # stable sort keeps the random order among ties


def _json(ids: list[str]) -> str:
    return json.dumps(ids, separators=(",", ":"))


def _zone(name: str | None, default: ZoneInfo) -> ZoneInfo:
    if not name:
        return default
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return default


def next_local(start: float, at: time, zone: ZoneInfo) -> float:
    """The first moment at or after ``start`` when the clock in ``zone`` shows ``at``."""
    local = datetime.fromtimestamp(start, zone)
    candidate = datetime.combine(local.date(), at, zone)
    if candidate.timestamp() < start:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, zone)
    return candidate.timestamp()


def due_times(tx: Transaction, spec: CampaignSpec, ids: list[str], start: float) -> list[float]:
    """When each customer's reward is due, per the campaign's delivery."""
    delivery = spec.schedule.delivery
    if delivery == "immediate" or not ids:
        return [start] * len(ids)
    campaign_zone = ZoneInfo(spec.timezone)
    at = spec.schedule.local_time or time(10, 0)
    zones: dict[str, str | None] = {}
    best: dict[str, int] = {}
    for chunk_start in range(0, len(ids), 50_000):
        chunk = tx.dialect.array(ids[chunk_start : chunk_start + 50_000])
        zones.update(
            (row[0], row[1])
            for row in tx.fetch_all(
                "SELECT id, timezone FROM customers WHERE " + tx.dialect.in_array("id", "ids"),
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
            zone = _zone(zones.get(cid), campaign_zone)
            due = next_local(start, at if hour is None else time(hour, 0), zone)
            cache[key] = due
        out.append(due)
    return out


def _best_hours(
    tx: Transaction,
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
    tallies: dict[str, dict[int, int]] = {}
    hour_of: dict[tuple[str | None, int], int] = {}
    for row in tx.iterate(
        "SELECT customer_id, ts / 900, count(*) FROM events WHERE "
        + tx.dialect.in_array("customer_id", "ids")
        + " AND ts <= :until GROUP BY customer_id, ts / 900",
        {"ids": chunk, "until": until},
    ):
        cid, quarter, n = str(row[0]), int(row[1]), int(row[2])
        name = zones.get(cid)
        hour = hour_of.get((name, quarter))
        if hour is None:
            hour = datetime.fromtimestamp(quarter * 900, _zone(name, campaign_zone)).hour
            hour_of[(name, quarter)] = hour
        hours = tallies.setdefault(cid, {})
        hours[hour] = hours.get(hour, 0) + n
    return {cid: min(hours, key=lambda h: (-hours[h], h)) for cid, hours in tallies.items()}


def plan_targets(
    conn: sqlite3.Connection,
    campaign_id: str,
    spec: CampaignSpec,
    *,
    now: float,
    seed: int,
    pilot: str | None = None,
) -> Plan:
    """Who a run started at ``now`` targets, in what order, when, and who is cut."""
    ids = segment_ids(conn, spec, now)
    ordered = rank(conn, spec, ids, seed)
    plan = Plan(targeted=len(ordered))
    plan.customer_ids = ordered
    plan.due_at = due_times(SqliteTransaction(conn), spec, ordered, now)
    plan.status = ["pending"] * len(ordered)
    plan.reason = [None] * len(ordered)
    audience = spec.caps.audience
    if audience is not None:
        # Rank decides who gets in: count the customers not yet granted by this
        # campaign in rank order; those past the remaining audience are cut now.
        (used,) = conn.execute(
            "SELECT coalesce(sum(customers), 0) FROM cap_counters"
            " WHERE scope = ? AND period = 'lifetime'",
            (f"campaign:{campaign_id}",),
        ).fetchone()
        earlier = {
            row[0]
            for row in conn.execute(
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


def pilot_size(pilot: str, total: int) -> int:
    """``"200"`` or ``"5%"`` of ``total`` (at least one when there is anyone)."""
    text = pilot.strip()
    if text.endswith("%"):
        share = Decimal(text[:-1])
        size = math.ceil(total * share / 100)
    else:
        size = int(text)
    return max(0, min(total, size if total == 0 or size > 0 else 1))


def create_run_sync(
    conn: sqlite3.Connection,
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
    (seq,) = conn.execute(
        "SELECT coalesce(max(seq), 0) + 1 FROM runs WHERE campaign_id = ?", (campaign_id,)
    ).fetchone()
    seed = run_seed(campaign_id, version, seq)
    if spec.kind == "live_action":
        plan = Plan()
    else:
        start = now if clearance_deadline is None else clearance_deadline
        plan = plan_targets(conn, campaign_id, spec, now=start, seed=seed, pilot=pilot)
    if clearance_deadline is not None:
        state = "clearance"
        plan.status = ["awaiting" if s == "pending" else s for s in plan.status]
    else:
        state = "pilot" if pilot else "running"
    cur = conn.execute(
        "INSERT INTO runs (campaign_id, seq, version, state, as_of, started_at, seed, targeted,"
        " clearance_deadline) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (campaign_id, seq, version, state, now, now, seed, plan.targeted, clearance_deadline),
    )
    run_id = cur.lastrowid
    assert run_id is not None
    conn.executemany(
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
