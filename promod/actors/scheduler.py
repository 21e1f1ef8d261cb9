"""The scheduler actor: owns the campaign timeline.

It decides when runs start, when clearance deadlines pass, when each customer's
local-time delivery is due, when daily cap windows roll over and when recurring
jobs fire. It reads the time from the app's clock only.
"""

from __future__ import annotations

from typing import Any

from promod.actors.base import Actor
from promod.actors.messages import Inspect


class SchedulerActor(Actor):
    name = "scheduler"

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    async def receive(self, message: object) -> object:
        if isinstance(message, Inspect):
            return {"clock": self.app.clock.now()}
        raise TypeError(f"scheduler: unknown message {type(message).__name__}")
