"""Built-in plugin: connects live-action campaigns to incoming events.

At start it installs the live engine as the HTTP API's ``on_events`` hook (events
posted to ``POST /v1/events`` are matched before the response) and kicks the
scheduler once, so inaction windows that closed while the daemon was down fire.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from promod.actors.messages import Kick
from promod.actors.refs import wake
from promod.live.engine import live_engine
from promod.logs import get_logger
from promod.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from promod.app import App

log = get_logger("promod.live")


@hookimpl
def promod_startup(app: App) -> None:
    engine = live_engine(app)
    app.on_events = engine.on_events
    wake(app.actor("scheduler"), Kick())
