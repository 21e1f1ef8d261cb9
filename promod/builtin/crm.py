"""Built-in plugin: the ``csv`` CRM connector type.

Registered like an outside plugin, through ``promod_register_crm_connectors``;
listed in ``promod.plugins.host.DEFAULT_PLUGINS``.
"""

from __future__ import annotations

from typing import Any

from promod.crm.csv_file import CsvConnectorType
from promod.plugins.hookspecs import hookimpl


@hookimpl
def promod_register_crm_connectors() -> list[Any]:
    return [CsvConnectorType()]
