"""Built-in plugin: the custom list admin commands (``lists.import|show|list|delete``).

Registered like an outside plugin's commands, through ``promod_register_commands``;
listed in ``promod.plugins.host.DEFAULT_PLUGINS``.
"""

from __future__ import annotations

from typing import Any

from promod.lists.commands import LIST_COMMANDS
from promod.plugins.hookspecs import hookimpl


@hookimpl
def promod_register_commands() -> list[Any]:
    return list(LIST_COMMANDS)
