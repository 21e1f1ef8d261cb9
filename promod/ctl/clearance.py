"""promodctl's clearance commands: runs awaiting or past clearance and their figures.

promodctl clearance list [--campaign ID]
promodctl clearance show RUN
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from promod.ctl.render import render_kv, render_table, render_value

COLUMNS = (
    "customers",
    "approved",
    "rejected",
    "unanswered",
    "granted",
    "capped",
)


def _percent(rate: Any) -> str:
    if rate is None:
        return "-"
    return f"{(Decimal(str(rate)) * 100).quantize(Decimal('0.1'))}%"


def render_clearance_runs(result: Any) -> str:
    if not isinstance(result, list):
        return render_value(result)
    rows = [
        {
            "run": r["run"],
            "campaign": r["campaign"],
            "state": "open" if r["open"] else r["state"],
            "required by": r["clearance_required_by"],
            **{k: r[k] for k in COLUMNS},
            "approval": _percent(r.get("approval_rate")),
        }
        for r in result
    ]
    return render_table(rows, empty="(no clearance runs)")


def render_clearance_run(result: Any) -> str:
    if not isinstance(result, Mapping):
        return render_value(result)
    shown = {
        "run": result["run"],
        "campaign": result["campaign"],
        "state": result["state"],
        "clearance required by": result["clearance_required_by"],
        "answers": "open" if result["open"] else "closed",
        "announced": "yes" if result.get("announced") else "no",
        **{k: result[k] for k in COLUMNS},
        "awaiting grant": result.get("to_grant", 0),
        "approval rate": _percent(result.get("approval_rate")),
    }
    return render_kv(shown)
