"""Actor refs: the only handle other code holds on an actor — ``tell`` and ``ask``, nothing else.

``app.actor(name)`` gives an :class:`ActorRef`. It finds the supervisor's current
instance of that child at every call, so it stays good across restarts, and it
never exposes the instance: no caller reads another actor's attributes. What an
actor knows, it answers to a message from :mod:`promod.actors.messages`::

    ledger = app.actor("ledger")
    done = await ledger.ask(ProcessDue())        # {"granted": 3}
    job = await ledger.ask(JobFor(campaign, 0))

Waking an actor — "look again now", where a missed wake only delays because the
actor also looks when it starts — is :func:`wake`, used by every sender::

    wake(app.actor("scheduler"), Kick())

A :class:`~promod.actors.messages.Wakeup` message equal to one still waiting in
the receiver's mailbox is merged into it (the actor drops the duplicate), and a
receiver that is restarting or full is logged, not raised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from promod.actors.base import Actor, ActorNotRunning, MailboxFull
from promod.actors.messages import Wakeup
from promod.logs import get_logger

__all__ = ["ActorRef", "wake"]

log = get_logger("promod.actors")


class ActorRef:
    """A handle on the actor named ``name``; ``resolve`` returns its current instance.

    ``resolve`` raises ``KeyError`` while no instance exists; ``tell`` and ``ask``
    then raise :class:`~promod.actors.base.ActorNotRunning`.
    """

    __slots__ = ("_resolve", "name")

    def __init__(self, name: str, resolve: Callable[[], object]) -> None:
        self.name = name
        self._resolve = resolve

    def __repr__(self) -> str:
        return f"<ActorRef {self.name!r}>"

    def _actor(self) -> Actor:
        try:
            found = self._resolve()
        except KeyError:
            raise ActorNotRunning(self.name, "absent") from None
        if not isinstance(found, Actor):
            raise ActorNotRunning(self.name, "not an actor")
        return found

    def tell(self, message: object) -> None:
        """Queue ``message`` and return; MailboxFull or ActorNotRunning when it cannot."""
        self._actor().tell(message)

    async def ask(self, message: object, timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        """Send ``message`` and wait for the answer (or the handler's exception)."""
        return await self._actor().ask(message, timeout=timeout)


def wake(ref: ActorRef, message: Wakeup) -> bool:
    """Tell ``ref`` to look again now; False (logged) when it is restarting, stopped or full.

    An equal wake still queued absorbs this one. The receiver also looks at the
    store when it starts, so a wake that cannot be delivered is not lost work.
    """
    try:
        ref.tell(message)
    except (ActorNotRunning, MailboxFull) as exc:
        log.warning("actor_not_woken", to=ref.name, message=type(message).__name__, error=str(exc))
        return False
    return True
