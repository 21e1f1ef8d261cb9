"""Built-in plugin: the ``csv`` and ``http`` CRM connector types and the ``crm.*`` commands.

Registered like an outside plugin, through ``promod_register_crm_connectors`` and
``promod_register_commands``; listed in ``promod.plugins.host.DEFAULT_PLUGINS``.
"""

from __future__ import annotations

from typing import Any

from promod.crm.commands import CRM_COMMANDS
from promod.crm.csvdrop import CsvConnectorType
from promod.crm.httpcrm import HttpConnectorType
from promod.plugins.hookspecs import hookimpl


@hookimpl
def promod_register_crm_connectors() -> list[Any]:
    return [CsvConnectorType(), HttpConnectorType()]


@hookimpl
def promod_register_commands() -> list[Any]:
    return list(CRM_COMMANDS)
