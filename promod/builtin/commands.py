"""Built-in plugin: the core admin commands (help, version, ping, status, ...)."""

from __future__ import annotations

from typing import Any

from promod.admin.commands import BUILTIN_COMMANDS
from promod.plugins.hookspecs import hookimpl


@hookimpl
def promod_register_commands() -> list[Any]:
    return list(BUILTIN_COMMANDS)
