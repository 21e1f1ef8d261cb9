"""``promodctl crm list|status|history|sync|apply|discard``: the client side of CRM sync.

``crm sync NAME`` asks for a refresh now and waits for its run to finish, with a
progress bar (records fetched) on a terminal; it exits 1 when the run failed, and
says so when it was held for ``crm apply|discard``::

    promodctl crm sync main
    promodctl crm history main
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from promod.ctl.client import AdminClient, CommandError
from promod.ctl.render import ProgressBar, format_timestamp, render_kv, render_table, render_value

if TYPE_CHECKING:
    from promod.ctl.main import CtlCommand

__all__ = [
    "render_crm_list",
    "render_crm_run",
    "render_crm_runs",
    "render_crm_status",
    "run_crm_sync",
]

POLL = 0.2


def _when(value: Any) -> str:
    return format_timestamp(float(value)) if isinstance(value, int | float) else "-"


def run_crm_sync(command: CtlCommand, client: AdminClient, ns: argparse.Namespace) -> Any:
    name = ns.p_name
    queued = client.call("crm.sync", {"name": name})
    after = int(queued.get("after_run") or 0)
    with ProgressBar(total=None, label=f"crm sync {name}") as bar:
        while True:
            status = client.call("crm.status", {"name": name})
            run = status.get("last_run") or {}
            running = status.get("running") or {}
            if running:
                bar.update(int(running.get("fetched") or 0))
            if run.get("id", 0) > after and run.get("state") != "running":
                break
            time.sleep(POLL)
    if run.get("state") == "failed":
        raise CommandError("unavailable", f"crm sync {name} failed: {run.get('error')}", run)
    return run


def _run_line(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "run": run.get("id"),
        "started": _when(run.get("started_at")),
        "trigger": run.get("trigger"),
        "state": run.get("state"),
        "fetched": run.get("fetched"),
        "added": run.get("added"),
        "removed": run.get("removed"),
        "suppressed": run.get("suppressed"),
        "invalid": run.get("invalid"),
        "duration": run.get("duration"),
    }


def render_crm_run(result: Any) -> str:
    if not isinstance(result, dict) or "state" not in result:
        return render_value(result)
    text = (
        f"run {result['id']} of {result['connector']} ({result['list']}): {result['state']};"
        f" fetched {result['fetched']}, {result.get('members')} members, {result.get('added')}"
        f" added, {result.get('removed')} removed, {result.get('suppressed')} skipped as"
        f" suppressed, {result.get('invalid')} invalid"
    )
    if result.get("error"):
        text += f"\n{result['error']}"
    if result.get("state") == "held":
        text += f"\napply with: promodctl crm apply {result['connector']} (or discard)"
    for error in result.get("errors") or []:
        text += f"\nrecord {error['record']}: {error['message']}"
    return text


def render_crm_list(result: Any) -> str:
    if not isinstance(result, list):
        return render_value(result)
    rows = [
        {
            "name": r["name"],
            "connector": r["connector"],
            "list": r["list"],
            "consent": r["consent"],
            "schedule": r["schedule"],
            "last run": _when(r.get("last_run")),
            "members": "-" if r.get("members") is None else r["members"],
            "state": r["state"],
        }
        for r in result
    ]
    return render_table(rows)


def render_crm_status(result: Any) -> str:
    if not isinstance(result, dict):
        return render_value(result)
    shown = {k: v for k, v in result.items() if k not in ("last_run", "held")}
    for key in ("next_sync", "next_responses"):
        shown[key] = _when(shown.get(key))
    text = render_kv(shown)
    if result.get("last_run"):
        text += "\n\nlast run:\n" + render_crm_run(result["last_run"])
    if result.get("held") and result["held"] != result.get("last_run"):
        text += "\n\nheld:\n" + render_crm_run(result["held"])
    return text


def render_crm_runs(result: Any) -> str:
    if not isinstance(result, list):
        return render_value(result)
    text = render_table([_run_line(r) for r in result])
    for run in result:
        for error in run.get("errors") or []:
            text += f"\nrun {run['id']} record {error['record']}: {error['message']}"
        if run.get("error"):
            text += f"\nrun {run['id']}: {run['error']}"
    return text
