"""Built-in plugin: the ``code_pool`` reward provider and the ``codes.*`` admin commands.

Registered like an outside plugin, through ``promod_register_reward_providers`` and
``promod_register_commands``; listed in ``promod.plugins.host.DEFAULT_PLUGINS``.
"""

from __future__ import annotations

from typing import Any

from promod.codepool.commands import CODE_COMMANDS
from promod.codepool.provider import CodePoolProvider
from promod.plugins.hookspecs import hookimpl


@hookimpl
def promod_register_reward_providers() -> list[Any]:
    return [CodePoolProvider()]


@hookimpl
def promod_register_commands() -> list[Any]:
    return list(CODE_COMMANDS)
