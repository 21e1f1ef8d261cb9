"""Built-in plugin: connects live-action campaigns to incoming events.

At start it installs the HTTP API's ``on_events`` hook, which tells the live actor
``EventsStored`` once a batch of ``POST /v1/events`` has committed (the request
does not wait for the match; the actor batches), and kicks the scheduler once, so
inaction windows that closed while the daemon was down fire.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from promod.actors.messages import EventsStored, Kick
from promod.actors.refs import wake
from promod.logs import get_logger
from promod.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from promod.app import App
    from promod.customers.store import StoredEvent

log = get_logger("promod.live")


def events_hook(app: App) -> Callable[[Sequence[StoredEvent]], None]:
    """The ``on_events`` hook: wake the live actor (merged with a wake still queued)."""
    live = app.actor("live")

    def stored(events: Sequence[StoredEvent]) -> None:
        if events:
            wake(live, EventsStored())

    return stored


@hookimpl
def promod_startup(app: App) -> None:
    app.on_events = events_hook(app)
    wake(app.actor("scheduler"), Kick())
