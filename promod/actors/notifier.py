"""The notifier actor: owns the outbox.

Every message and webhook leaves through it, with retries and consent checks.
"""

from __future__ import annotations

from typing import Any

from promod.actors.base import Actor
from promod.actors.messages import Inspect


class NotifierActor(Actor):
    name = "notifier"

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    async def receive(self, message: object) -> object:
        if isinstance(message, Inspect):
            return {}
        raise TypeError(f"notifier: unknown message {type(message).__name__}")
