"""The clearance actor: owns conditional execution.

Target snapshots, the ``clearance.required`` webhook, approvals and their deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promod.actors.base import Actor
from promod.actors.messages import Inspect


@dataclass(frozen=True)
class RunsChanged:
    """A run waiting for clearance was created (or changed): look at the store again."""


class ClearanceActor(Actor):
    name = "clearance"

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    async def receive(self, message: object) -> object:
        if isinstance(message, Inspect):
            return {}
        if isinstance(message, RunsChanged):
            return None
        raise TypeError(f"clearance: unknown message {type(message).__name__}")
