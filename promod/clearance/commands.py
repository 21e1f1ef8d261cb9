"""Admin commands for operators: clearance runs and their figures.

    {"cmd": "clearance.list", "args": {"campaign": "winback-30d"}}
    {"cmd": "clearance.show", "args": {"run": 7}}

``promodctl clearance list`` / ``promodctl clearance show RUN`` render them.
"""

from __future__ import annotations

from typing import Any

from promod.admin.registry import ArgSpec, Command, CommandContext, CommandError, Role, command
from promod.clearance.store import list_runs_sync, summary_sync


@command(
    "clearance.list",
    role=Role.VIEWER,
    mutating=False,
    summary="runs awaiting or past clearance, with approval counts",
    usage="clearance list [--campaign ID] [--limit N]",
    args={
        "campaign": ArgSpec(str, help="only this campaign's runs"),
        "limit": ArgSpec(int, help="at most N newest runs (default 100)"),
    },
)
async def clearance_list(ctx: CommandContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    limit = args.get("limit", 100)
    if limit < 1:
        raise CommandError("invalid_args", "limit must be at least 1")
    campaign = args.get("campaign")
    runs: list[dict[str, Any]] = await ctx.app.db.run(
        lambda tx: list_runs_sync(tx, campaign_id=campaign, limit=limit), write=False
    )
    return runs


@command(
    "clearance.show",
    role=Role.VIEWER,
    mutating=False,
    summary="one clearance run: approved, rejected, unanswered, granted, capped, approval rate",
    usage="clearance show RUN",
    args={"run": ArgSpec(int, required=True, help="run id")},
)
async def clearance_show(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    run_id = args["run"]
    summary: dict[str, Any] | None = await ctx.app.db.run(
        lambda tx: summary_sync(tx, run_id), write=False
    )
    if summary is None:
        raise CommandError("not_found", f"no clearance run {run_id}")
    return summary


CLEARANCE_COMMANDS: tuple[Command, ...] = (clearance_list, clearance_show)
