"""The ``live`` section of a live-action campaign's report.

Firings (targets a trigger added, plus firings that added nobody), grants, refusals
by reason (the engine's own — ``once_per_customer``, ``segment``, ``window_past_end``
— and the ledger's, such as ``frequency`` or ``budget``), the inaction timers by
state, and the time from event to grant as p50/p99 seconds::

    section = live_report(conn, "first-deposit")   # None for other kinds of campaign
    section["event_to_grant"]["p99"]
"""

from __future__ import annotations

import sqlite3
from typing import Any

__all__ = ["live_report", "percentile"]


def percentile(ordered: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of sorted values; None when there are none."""
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))
    return ordered[rank]


def _latency(values: list[float]) -> dict[str, Any]:
    ordered = sorted(max(0.0, v) for v in values)
    p50 = percentile(ordered, 0.50)
    p99 = percentile(ordered, 0.99)
    return {
        "samples": len(ordered),
        "p50": None if p50 is None else round(p50, 3),
        "p99": None if p99 is None else round(p99, 3),
    }


def live_report(conn: sqlite3.Connection, campaign_id: str) -> dict[str, Any] | None:
    """The live section, or None when the campaign is not a live-action one."""
    row = conn.execute(
        "SELECT json_extract(spec, '$.kind') FROM campaigns WHERE id = ?", (campaign_id,)
    ).fetchone()
    if row is None or row[0] != "live_action":
        return None
    (targeted,) = conn.execute(
        "SELECT count(*) FROM live_firings WHERE campaign_id = ?", (campaign_id,)
    ).fetchone()
    refused: dict[str, int] = {
        str(reason): int(n)
        for reason, n in conn.execute(
            "SELECT reason, count FROM live_refusals WHERE campaign_id = ?", (campaign_id,)
        )
    }
    for reason, n in conn.execute(
        "SELECT t.reason, count(*) FROM live_firings AS f JOIN run_targets AS t"
        " ON t.run_id = f.run_id AND t.customer_id = f.customer_id"
        " WHERE f.campaign_id = ? AND t.status = 'refused' GROUP BY t.reason",
        (campaign_id,),
    ):
        key = str(reason or "refused")
        refused[key] = refused.get(key, 0) + int(n)
    timings = conn.execute(
        "SELECT g.created_at - f.event_ts, g.created_at - f.fired_at, f.source"
        " FROM live_firings AS f JOIN grants AS g ON g.campaign_id = f.campaign_id"
        " AND g.run_id = f.run_id AND g.customer_id = f.customer_id"
        " WHERE f.campaign_id = ? AND g.state != 'failed'",
        (campaign_id,),
    ).fetchall()
    timers = {
        str(state): int(n)
        for state, n in conn.execute(
            "SELECT state, count(*) FROM live_timers WHERE campaign_id = ? GROUP BY state",
            (campaign_id,),
        )
    }
    sources = {
        str(source): int(n)
        for source, n in conn.execute(
            "SELECT source, count(*) FROM live_firings WHERE campaign_id = ? GROUP BY source",
            (campaign_id,),
        )
    }
    firings = int(targeted) + sum(n for reason, n in refused.items() if reason in _ENGINE_REASONS)
    return {
        "firings": firings,
        "targeted": int(targeted),
        "by_source": sources,
        "grants": len(timings),
        "refused": dict(sorted(refused.items(), key=lambda kv: (-kv[1], kv[0]))),
        "timers": timers,
        "event_to_grant": _latency([float(t[0]) for t in timings]),
        "firing_to_grant": _latency([float(t[1]) for t in timings]),
    }


# Refusals the engine counts itself (firings that added no target).
_ENGINE_REASONS = frozenset({"once_per_customer", "segment", "window_past_end"})
