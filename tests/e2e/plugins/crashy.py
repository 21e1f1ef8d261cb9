"""A plugin from ``plugins.dirs`` for the end-to-end tests: makes an actor crash.

``test.crash {"actor": "scheduler"}`` tells the actor a message it does not
understand, which crashes it (let it crash) so its supervisor restarts it.
"""

from __future__ import annotations

from typing import Any

from promod import hookimpl
from promod.admin.registry import ArgSpec, CommandContext, Role, command

__version__ = "1.0"


@command(
    "test.crash",
    role=Role.ADMIN,
    mutating=True,
    summary="crash an actor by telling it an unknown message",
    args={"actor": ArgSpec(str, required=True)},
)
async def crash(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    ctx.app.actor(args["actor"]).tell(object())
    return {"told": args["actor"]}


@hookimpl
def promod_register_commands() -> list[Any]:
    return [crash]
