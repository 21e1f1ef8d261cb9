"""The clearance actor: owns conditional execution.

Target snapshots, the ``clearance.required`` webhook, approvals and their deadline.
"""

from __future__ import annotations

from typing import Any

from promod.actors.base import Actor
from promod.actors.messages import Inspect


class ClearanceActor(Actor):
    name = "clearance"

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    async def receive(self, message: object) -> object:
        if isinstance(message, Inspect):
            return {}
        raise TypeError(f"clearance: unknown message {type(message).__name__}")
