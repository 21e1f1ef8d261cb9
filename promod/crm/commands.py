"""Admin commands of CRM sync (``promodctl crm ...``).

``crm.list``, ``crm.status {name}``, ``crm.history {name}`` (viewer); ``crm.sync
{name}``, ``crm.apply {name}``, ``crm.discard {name}`` (operator, audited)::

    -> {"cmd": "crm.sync", "args": {"name": "main"}}
    <- {"ok": true, "result": {"connector": "main", "queued": true}}
    -> {"cmd": "crm.apply", "args": {"name": "main"}}
    <- {"ok": true, "result": {"id": 7, "state": "applied", "members": 412, ...}}
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from promod.actors.crmsync import Status, SyncNow
from promod.admin.registry import ArgSpec, Command, CommandContext, CommandError, Role, command
from promod.config import CrmConfig
from promod.crm import store
from promod.crm.sync import apply_held, discard_held

__all__ = ["CRM_COMMANDS"]

_NAME = {"name": ArgSpec(str, required=True, help="the [crm.NAME] connector")}


def _now(ctx: CommandContext) -> float:
    clock = getattr(ctx.app, "clock", None)
    return float(clock.now()) if clock is not None else time.time()


def _cfg(ctx: CommandContext, name: str) -> CrmConfig:
    crm: dict[str, CrmConfig] = ctx.app.config.crm
    if name not in crm:
        known = ", ".join(sorted(crm)) or "none configured"
        raise CommandError("not_found", f"no CRM connector {name!r} (known: {known})")
    return crm[name]


async def _live(ctx: CommandContext, name: str | None) -> dict[str, Any]:
    try:
        answer: dict[str, Any] = await ctx.app.actor("crmsync").ask(Status(name))
    except Exception:
        return {}
    return answer


def _state(run: dict[str, Any] | None, live: dict[str, Any]) -> str:
    if live.get("running"):
        return "running"
    if run is None:
        return "never run"
    return str(run["state"])


@command(
    "crm.list",
    role=Role.VIEWER,
    mutating=False,
    summary="CRM connectors: type, schedule, last run, list size, state",
    usage="crm.list",
)
async def crm_list(ctx: CommandContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    crm: dict[str, CrmConfig] = ctx.app.config.crm
    last = await ctx.app.db.run(store.last_runs, write=False)
    live = await _live(ctx, None)
    out = []
    for name, cfg in sorted(crm.items()):
        size = await ctx.app.db.run(partial(store.list_size, list_name=cfg.list_name), write=False)
        run = last.get(name, {}).get("last_run")
        out.append(
            {
                "name": name,
                "connector": cfg.connector,
                "list": cfg.list_name,
                "consent": cfg.consent,
                "schedule": cfg.schedule,
                "last_run": run["started_at"] if run else None,
                "last_success": last.get(name, {}).get("last_success"),
                "members": size,
                "state": _state(run, live.get(name, {})),
                "next_sync": live.get(name, {}).get("next_sync"),
            }
        )
    return out


@command(
    "crm.status",
    role=Role.VIEWER,
    mutating=False,
    summary="one CRM connector: its last run, a held refresh, the run in progress",
    usage="crm.status NAME",
    args=dict(_NAME),
)
async def crm_status(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    cfg = _cfg(ctx, args["name"])
    history = await ctx.app.db.run(partial(store.runs, connector=cfg.name, limit=1), write=False)
    held = await ctx.app.db.run(partial(store.held_run, connector=cfg.name), write=False)
    size = await ctx.app.db.run(partial(store.list_size, list_name=cfg.list_name), write=False)
    responses = await ctx.app.db.run(
        partial(store.response_counts, connector=cfg.name), write=False
    )
    live = (await _live(ctx, cfg.name)).get(cfg.name, {})
    run = history[0] if history else None
    return {
        "name": cfg.name,
        "connector": cfg.connector,
        "list": cfg.list_name,
        "consent": cfg.consent,
        "media_type": cfg.media_type,
        "schedule": cfg.schedule,
        "max_change": str(cfg.max_change),
        "members": size,
        "state": _state(run, live),
        "last_run": run,
        "held": held,
        "running": live.get("running"),
        "queued": live.get("queued", False),
        "next_sync": live.get("next_sync"),
        "next_responses": live.get("next_responses"),
        "responses": {**responses, "last_export": live.get("last_export")},
    }


@command(
    "crm.history",
    role=Role.VIEWER,
    mutating=False,
    summary="the recent runs of a CRM connector, newest first",
    usage="crm.history NAME [LIMIT]",
    args={**_NAME, "limit": ArgSpec(int, help="how many runs (default 20)")},
)
async def crm_history(ctx: CommandContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    cfg = _cfg(ctx, args["name"])
    limit = max(1, min(int(args.get("limit", 20)), 500))
    result: list[dict[str, Any]] = await ctx.app.db.run(
        partial(store.runs, connector=cfg.name, limit=limit), write=False
    )
    return result


@command(
    "crm.sync",
    role=Role.OPERATOR,
    mutating=True,
    summary="refresh a CRM connector's list now",
    usage="crm.sync NAME",
    args=dict(_NAME),
)
async def crm_sync(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    cfg = _cfg(ctx, args["name"])
    last = await ctx.app.db.run(partial(store.runs, connector=cfg.name, limit=1), write=False)
    try:
        await ctx.app.actor("crmsync").ask(SyncNow(cfg.name))
    except KeyError:
        raise CommandError("unavailable", f"connector {cfg.name!r} is not open") from None
    return {"connector": cfg.name, "queued": True, "after_run": last[0]["id"] if last else 0}


async def _decide(ctx: CommandContext, name: str, fn: Any, verb: str) -> dict[str, Any]:
    cfg = _cfg(ctx, name)
    run = await ctx.app.db.run(partial(fn, cfg=cfg, now=_now(ctx)))
    if run is None:
        raise CommandError("conflict", f"no refresh of {cfg.name!r} is held; nothing to {verb}")
    return dict(run)


@command(
    "crm.apply",
    role=Role.OPERATOR,
    mutating=True,
    summary="apply a CRM refresh held for changing the list too much",
    usage="crm.apply NAME",
    args=dict(_NAME),
)
async def crm_apply(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    return await _decide(ctx, args["name"], apply_held, "apply")


@command(
    "crm.discard",
    role=Role.OPERATOR,
    mutating=True,
    summary="discard a held CRM refresh; the list stays as it is",
    usage="crm.discard NAME",
    args=dict(_NAME),
)
async def crm_discard(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    return await _decide(ctx, args["name"], discard_held, "discard")


CRM_COMMANDS: tuple[Command, ...] = (
    crm_list,
    crm_status,
    crm_history,
    crm_sync,
    crm_apply,
    crm_discard,
)
