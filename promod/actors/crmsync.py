"""The crmsync actor: owns the CRM connectors.

Scheduled refresh of recipient lists, suppressions and response export.
"""

from __future__ import annotations

from typing import Any

from promod.actors.base import Actor
from promod.actors.messages import Inspect


class CrmSyncActor(Actor):
    name = "crmsync"

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    async def receive(self, message: object) -> object:
        if isinstance(message, Inspect):
            return {}
        raise TypeError(f"crmsync: unknown message {type(message).__name__}")
