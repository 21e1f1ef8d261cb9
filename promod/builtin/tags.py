"""Built-in plugin: the tag commands (``tags.apply|simulate|list|show|history|add|remove``).

Registered like an outside plugin's commands, through ``promod_register_commands``;
listed in ``promod.plugins.host.DEFAULT_PLUGINS``.
"""

from __future__ import annotations

from typing import Any

from promod.plugins.hookspecs import hookimpl
from promod.tags.commands import TAG_COMMANDS


@hookimpl
def promod_register_commands() -> list[Any]:
    return list(TAG_COMMANDS)
