"""Built-in plugin: connects live-action campaigns to incoming events.

At start it installs the live engine as the HTTP API's ``on_events`` hook (events
posted to ``POST /v1/events`` are matched before the response) and kicks the
scheduler once, so inaction windows that closed while the daemon was down fire.
"""

from __future__ import annotations

from typing import Any

from promod.live.engine import live_engine
from promod.logs import get_logger
from promod.plugins.hookspecs import hookimpl

log = get_logger("promod.live")


@hookimpl
def promod_startup(app: Any) -> None:
    engine = live_engine(app)
    app.extras["on_events"] = engine.on_events
    from promod.actors.scheduler import Kick

    try:
        app.actor("scheduler").tell(Kick())
    except Exception as exc:
        log.warning("live_scheduler_not_told", error=repr(exc))
