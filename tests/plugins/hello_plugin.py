"""A plugin module the promod.testing tests register by name: one admin command."""

from __future__ import annotations

from typing import Any

from promod import hookimpl
from promod.admin.registry import CommandContext, Role, command

__version__ = "2.0"


@command("hello", role=Role.VIEWER, mutating=False, summary="say hello")
async def hello(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    return {"hello": "world", "started_hook": ctx.app.plugin_state.get("hello_started", False)}


@hookimpl
def promod_register_commands() -> list[Any]:
    return [hello]


@hookimpl
def promod_startup(app: Any) -> None:
    app.plugin_state["hello_started"] = True
