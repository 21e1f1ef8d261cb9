"""The ``live`` section of a live-action campaign's report.

Firings (targets a trigger added, plus firings that added nobody), grants, refusals
by reason (the engine's own — ``once_per_customer``, ``segment``, ``window_past_end``
— and the ledger's, such as ``frequency`` or ``budget``), the inaction timers by
state, and the time from event to grant as p50/p99 seconds::

    section = live_report(tx, "first-deposit")       # None for other kinds of campaign
    section["event_to_grant"]["p99"]
"""

from __future__ import annotations

from typing import Any

from promod.live import store
from promod.store.seam import Transaction

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


def live_report(tx: Transaction, campaign_id: str) -> dict[str, Any] | None:
    """The live section, or None when the campaign is not a live-action one."""
    if store.campaign_kind(tx, campaign_id) != "live_action":
        return None
    targeted = store.report_firings(tx, campaign_id)
    refused = store.report_refusals(tx, campaign_id)
    for reason, n in store.report_target_refusals(tx, campaign_id):
        key = reason or "refused"
        refused[key] = refused.get(key, 0) + n
    timings = store.report_timings(tx, campaign_id)
    firings = targeted + sum(n for reason, n in refused.items() if reason in _ENGINE_REASONS)
    return {
        "firings": firings,
        "targeted": targeted,
        "by_source": store.report_sources(tx, campaign_id),
        "grants": len(timings),
        "refused": dict(sorted(refused.items(), key=lambda kv: (-kv[1], kv[0]))),
        "timers": store.report_timers(tx, campaign_id),
        "event_to_grant": _latency([t[0] for t in timings]),
        "firing_to_grant": _latency([t[1] for t in timings]),
    }


# Refusals the engine counts itself (firings that added no target).
_ENGINE_REASONS = frozenset({"once_per_customer", "segment", "window_past_end"})
