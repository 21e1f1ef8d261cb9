"""The ledger actor: owns caps and grants.

The only writer of reservations and spend; every grant passes it exactly once.
"""

from __future__ import annotations

from typing import Any

from promod.actors.base import Actor
from promod.actors.messages import Inspect


class LedgerActor(Actor):
    name = "ledger"

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    async def receive(self, message: object) -> object:
        if isinstance(message, Inspect):
            return {}
        raise TypeError(f"ledger: unknown message {type(message).__name__}")
