"""The crmsync actor: owns the CRM connectors.

Scheduled refresh of recipient lists, suppressions and response export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from promod.actors.base import Actor
from promod.actors.messages import Inspect

if TYPE_CHECKING:
    from promod.app import App


class CrmSyncActor(Actor):
    name = "crmsync"

    def __init__(self, app: App) -> None:
        super().__init__()
        self.app = app

    async def receive(self, message: object) -> object:
        if isinstance(message, Inspect):
            return {}
        raise TypeError(f"crmsync: unknown message {type(message).__name__}")
