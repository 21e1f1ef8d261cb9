"""Built-in plugin: the ``clearance.*`` admin commands (conditional execution)."""

from __future__ import annotations

from typing import Any

from promod.clearance.commands import CLEARANCE_COMMANDS
from promod.plugins.hookspecs import hookimpl


@hookimpl
def promod_register_commands() -> list[Any]:
    return list(CLEARANCE_COMMANDS)
