"""Built-in plugin: campaign, kill switch and clock admin commands."""

from __future__ import annotations

from typing import Any

from promod.campaigns.commands import CAMPAIGN_COMMANDS
from promod.plugins.hookspecs import hookimpl


@hookimpl
def promod_register_commands() -> list[Any]:
    return list(CAMPAIGN_COMMANDS)
