"""Runs: the target list of one execution of a campaign, in rank order, with due times.

The names callers use, from where they live: the pure planning parts in
:mod:`promod.campaigns.plan`, the store side (who a segment selects, ranking,
due times, writing a run) in :mod:`promod.campaigns.store_runs`::

    plan = plan_targets(tx, "winback", spec, now=now, seed=run_seed("winback", 1, 1))
"""

from __future__ import annotations

from promod.campaigns.plan import Plan, next_local, pilot_size, run_seed
from promod.campaigns.store_runs import (
    create_run_sync,
    due_times,
    plan_targets,
    rank,
    segment_ids,
)

__all__ = [
    "Plan",
    "create_run_sync",
    "due_times",
    "next_local",
    "pilot_size",
    "plan_targets",
    "rank",
    "run_seed",
    "segment_ids",
]
