"""Built-in plugin: the customer and event admin commands (imports, ``customers.show``).

Registered like an outside plugin's commands, through ``promod_register_commands``;
listed in ``promod.plugins.host.DEFAULT_PLUGINS``.
"""

from __future__ import annotations

from typing import Any

from promod.customers.commands import CUSTOMER_COMMANDS
from promod.plugins.hookspecs import hookimpl


@hookimpl
def promod_register_commands() -> list[Any]:
    return list(CUSTOMER_COMMANDS)
