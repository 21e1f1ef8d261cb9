"""The codepool actor: owns the unique code inventory.

Generation, import, allocation, expiry, redemption and low-stock alerts.
"""

from __future__ import annotations

from typing import Any

from promod.actors.base import Actor
from promod.actors.messages import Inspect


class CodePoolActor(Actor):
    name = "codepool"

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    async def receive(self, message: object) -> object:
        if isinstance(message, Inspect):
            return {}
        raise TypeError(f"codepool: unknown message {type(message).__name__}")
