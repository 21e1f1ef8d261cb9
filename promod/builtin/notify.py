"""Built-in plugin: the ``smtp`` and ``webhook`` channel types and the outbox commands.

Registered like an outside plugin, through ``promod_register_channels`` and
``promod_register_commands``; listed in ``promod.plugins.host.DEFAULT_PLUGINS``.
"""

from __future__ import annotations

from typing import Any

from promod.notify.commands import OUTBOX_COMMANDS
from promod.notify.smtp import SmtpChannelType
from promod.notify.webhook import WebhookChannelType
from promod.plugins.hookspecs import hookimpl


@hookimpl
def promod_register_channels() -> list[Any]:
    return [SmtpChannelType(), WebhookChannelType()]


@hookimpl
def promod_register_commands() -> list[Any]:
    return list(OUTBOX_COMMANDS)
