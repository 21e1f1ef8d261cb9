"""Settling: drive actors until a whole round of their due work changes nothing.

Each actor answers the ``Settle`` message by doing, now, every piece of work that is
due (one pass of its timeline: the scheduler's tick, the ledger's grants and
issues, the notifier's fan-out and deliveries, the codepool's expiry sweep). One
round asks every actor in turn and waits for each answer. A round after which the
store counts no new row changes (:attr:`promod.store.database.Database.changes`)
leaves the daemon idle: every actor has looked at the state the others left and
found nothing due. That is the moment a test asserts that something did *not*
happen, instead of sleeping and hoping the daemon was quick enough (the idea of
arq's burst mode: drain the queue, then stop)::

    rounds = await settle([scheduler, ledger, notifier], app.db)
    rounds = await settle_app(app)            # every actor of a running daemon

Work that is due later (a local delivery time, a retry's backoff, an open circuit)
is not due now and does not keep the daemon from settling. The admin command
``debug.settle`` runs :func:`settle_app` in the daemon.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from promod.actors.base import Actor
from promod.actors.messages import Settle

__all__ = ["MAX_ROUNDS", "NotSettled", "settle", "settle_app"]

MAX_ROUNDS = 100


class NotSettled(Exception):
    """The actors were still changing the store after ``max_rounds`` rounds."""

    def __init__(self, rounds: int, busy: Sequence[str]) -> None:
        super().__init__(
            f"the actors did not settle within {rounds} rounds"
            f" (still changing the store: {', '.join(busy) or 'others'})"
        )
        self.rounds = rounds
        self.busy = list(busy)


async def settle(
    actors: Sequence[Actor],
    db: Any,
    *,
    max_rounds: int = MAX_ROUNDS,
    timeout: float = 60.0,  # noqa: ASYNC109
) -> int:
    """Ask every actor to ``Settle`` until a round changes no row; the rounds it took.

    ``timeout`` bounds each actor's answer (TimeoutError); NotSettled after
    ``max_rounds`` rounds that all changed something.
    """
    busy: list[str] = []
    for rounds in range(1, max_rounds + 1):
        start = db.changes
        busy = []
        for actor in actors:
            before = db.changes
            await actor.ask(Settle(), timeout=timeout)
            if db.changes != before:
                busy.append(actor.name)
        if db.changes == start:
            return rounds
    raise NotSettled(max_rounds, busy)


async def settle_app(app: Any, *, max_rounds: int = MAX_ROUNDS) -> int:
    """Settle every supervised actor of a running daemon, in start order."""
    assert app.supervisor is not None
    actors = [
        child
        for child in (app.actor(info["name"]) for info in app.supervisor.children_info())
        if isinstance(child, Actor)
    ]
    return await settle(actors, app.db, max_rounds=max_rounds)
