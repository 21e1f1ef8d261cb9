"""Pure parts of run planning: the plan, the seeded order, local times, pilot sizes.

The store side (who a segment selects, ranks, due times from the customers' zones
and events, writing a run) is :mod:`promod.campaigns.store_runs`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Plan", "next_local", "pilot_size", "rank_key", "run_seed", "zone_or"]


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


def rank_key(value: Any) -> tuple[int, Any]:
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


def zone_or(name: str | None, default: ZoneInfo) -> ZoneInfo:
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


def pilot_size(pilot: str, total: int) -> int:
    """``"200"`` or ``"5%"`` of ``total`` (at least one when there is anyone)."""
    text = pilot.strip()
    if text.endswith("%"):
        share = Decimal(text[:-1])
        size = math.ceil(total * share / 100)
    else:
        size = int(text)
    return max(0, min(total, size if total == 0 or size > 0 else 1))
