"""Built-in admin commands: help, version, ping, status, actors, plugins, log-level, audit,
debug.settle.

Each is a :class:`~promod.admin.registry.Command` built with the ``command`` decorator,
exactly like a plugin's; the JSON request and the ``promodctl`` form are in its docstring::

    registry = CommandRegistry()
    register_builtin_commands(registry)
"""

from __future__ import annotations

import datetime as dt
import inspect
import platform
from collections.abc import Mapping
from typing import Any

from promod.admin.registry import (
    ArgSpec,
    Command,
    CommandContext,
    CommandError,
    CommandRegistry,
    Role,
    command,
)
from promod.ledger import killswitch

__all__ = ["BUILTIN_COMMANDS", "LOG_LEVELS", "register_builtin_commands"]

LOG_LEVELS = ("debug", "info", "warning", "error")


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


@command(
    "help",
    role=None,
    mutating=False,
    summary="list the commands, or describe one",
    usage="help [COMMAND]",
    args={"command": ArgSpec(str, help="a command name, e.g. audit")},
)
async def help_command(ctx: CommandContext, args: dict[str, Any]) -> Any:
    """``{"cmd": "help", "args": {"command": "audit"}}`` / ``promodctl help [CMD]``.

    Without a command: ``[{name, role, mutating, summary, usage, allowed}]``; ``allowed``
    tells whether the caller's role may run it. With one: its full description.
    """
    registry: CommandRegistry = ctx.registry if ctx.registry is not None else ctx.app.commands
    name = args.get("command")
    if name is not None:
        cmd = registry.get(name)
        if cmd is None:
            raise CommandError("not_found", f"no command {name!r}", {"command": name})
        return {**cmd.describe(), "allowed": cmd.allows(ctx.caller.role)}
    listing = []
    for cmd in registry.all():
        item = cmd.describe()
        del item["args"]
        item["allowed"] = cmd.allows(ctx.caller.role)
        listing.append(item)
    return listing


@command("version", role=None, mutating=False, summary="the daemon's version", usage="version")
async def version_command(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    """``{"cmd": "version"}`` / ``promodctl version`` -> ``{"version", "python"}``."""
    return {"version": ctx.app.version, "python": platform.python_version()}


@command("ping", role=None, mutating=False, summary="check the daemon answers", usage="ping")
async def ping_command(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    """``{"cmd": "ping"}`` / ``promodctl ping``.

    ``{"pong": true, "time", "timezone", "user", "role"}``; ``timezone`` is the site's
    (``[daemon] timezone``), in which promodctl shows times.
    """
    daemon = getattr(getattr(ctx.app, "config", None), "daemon", None)
    return {
        "pong": True,
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "timezone": getattr(daemon, "timezone", "UTC"),
        "user": ctx.caller.user,
        "role": ctx.caller.role.label if ctx.caller.role is not None else None,
    }


@command("status", role=Role.VIEWER, mutating=False, summary="daemon status", usage="status")
async def status_command(ctx: CommandContext, args: dict[str, Any]) -> Any:
    """``{"cmd": "status"}`` / ``promodctl status`` -> the daemon's ``App.status()``, with
    ``kill_switch`` (``{engaged_at, by}`` while engaged, else null)."""
    result = await _maybe_await(ctx.app.status())
    db = getattr(ctx.app, "db", None)
    if isinstance(result, Mapping) and db is not None:
        result = {**result, "kill_switch": await killswitch.state(db)}
    return result


@command("actors", role=Role.VIEWER, mutating=False, summary="supervised children", usage="actors")
async def actors_command(ctx: CommandContext, args: dict[str, Any]) -> Any:
    """``{"cmd": "actors"}`` / ``promodctl actors``.

    ``[{name, state, restarts, restart_type, started_at, last_error}]``.
    """
    supervisor = getattr(ctx.app, "supervisor", None)
    if supervisor is None:
        return []
    return await _maybe_await(supervisor.children_info())


@command("plugins", role=Role.VIEWER, mutating=False, summary="loaded plugins", usage="plugins")
async def plugins_command(ctx: CommandContext, args: dict[str, Any]) -> Any:
    """``{"cmd": "plugins"}`` / ``promodctl plugins``.

    ``[{name, version, hooks, registers, health}]``; ``health`` is ``{state, circuits}``:
    ``ok`` / ``half_open`` / ``open`` and the circuit breaker of every provider,
    channel and connector the plugin registered (state, recent failures, next probe).
    """
    from promod.plugins import isolation

    described = await _maybe_await(ctx.app.plugins.describe())
    if not isinstance(described, list):
        return described
    return isolation.health(ctx.app, described)


def _sets_level(args: Mapping[str, Any]) -> bool:
    return args.get("level") is not None


@command(
    "log-level",
    role=Role.OPERATOR,
    mutating=_sets_level,
    summary="show the log level, or set it (audited)",
    usage="log-level [debug|info|warning|error]",
    args={"level": ArgSpec(str, help="new level: " + ", ".join(LOG_LEVELS))},
)
async def log_level_command(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    """``{"cmd": "log-level", "args": {"level": "debug"}}`` / ``promodctl log-level [LEVEL]``.

    Returns ``{"level"}``, plus ``"previous"`` when it was changed. Lasts until the
    daemon restarts or reloads its config.
    """
    from promod import logs

    current = logs.get_level()
    level = args.get("level")
    if level is None:
        return {"level": current}
    level = level.lower()
    if level not in LOG_LEVELS:
        raise CommandError(
            "invalid_args",
            f"level must be one of {', '.join(LOG_LEVELS)}, not {args['level']!r}",
        )
    logs.set_level(level)
    return {"level": logs.get_level(), "previous": current}


@command(
    "audit",
    role=Role.VIEWER,
    mutating=False,
    summary="read the audit log",
    usage="audit [--since ISO-TIME|DURATION] [--limit N]",
    args={
        "since": ArgSpec(str, help="ISO 8601 time, or a duration back from now like 1h"),
        "limit": ArgSpec(int, help="at most this many (newest) rows; default 100"),
        "command": ArgSpec(str, help="only rows of this command"),
    },
)
async def audit_command(ctx: CommandContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    """``{"cmd": "audit", "args": {"since": "1h", "limit": 20}}`` / ``promodctl audit``.

    Rows oldest first: ``[{id, ts, uid, gid, pid, user, role, command, args, outcome,
    error}]``.
    """
    limit = args.get("limit", 100)
    if not 1 <= limit <= 10_000:
        raise CommandError("invalid_args", "limit must be between 1 and 10000")
    rows: list[dict[str, Any]] = await ctx.app.audit.query(
        since=args.get("since"), limit=limit, command=args.get("command")
    )
    return rows


@command(
    "debug.settle",
    role=Role.ADMIN,
    mutating=False,
    summary="do all work due now in every actor, answer when the daemon is idle",
    usage="call debug.settle",
)
async def settle_command(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    """``{"cmd": "debug.settle"}`` / ``promodctl call debug.settle`` -> ``{"rounds", "now"}``.

    Asks every actor to do the work that is due at the clock's current time (grants,
    clearance decisions, deliveries, expiry), round after round, until a round changes
    nothing in the store (:mod:`promod.actors.settle`). Work due later stays where it
    is. For tests and diagnosis: after it, whatever has not happened was not due.
    ``unavailable`` while the daemon shuts down or an actor is down; ``conflict`` when
    the actors keep changing the store for 100 rounds.
    """
    from promod.actors.base import ActorNotRunning
    from promod.actors.settle import NotSettled, settle_app

    if getattr(ctx.app, "shutting_down", False):
        raise CommandError("unavailable", "the daemon is shutting down")
    try:
        rounds = await settle_app(ctx.app)
    except (ActorNotRunning, KeyError) as exc:
        raise CommandError("unavailable", f"an actor is not running: {exc}") from None
    except NotSettled as exc:
        raise CommandError("conflict", str(exc)) from None
    return {"rounds": rounds, "now": ctx.app.clock.now()}


BUILTIN_COMMANDS: tuple[Command, ...] = (
    help_command,
    version_command,
    ping_command,
    status_command,
    actors_command,
    plugins_command,
    log_level_command,
    audit_command,
    settle_command,
)


def register_builtin_commands(registry: CommandRegistry) -> CommandRegistry:
    """Add the built-in commands to ``registry`` (returned for chaining)."""
    for cmd in BUILTIN_COMMANDS:
        registry.register(cmd)
    return registry
