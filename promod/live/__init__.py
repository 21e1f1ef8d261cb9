"""Live-action campaigns: rewards triggered by what customers do, or fail to do, in a window.

``promod.live.match`` evaluates a trigger's filters and thresholds exactly,
``promod.live.index`` finds the running campaigns listening to an event name,
``promod.live.engine`` matches stored events, keeps inaction timers and fires
targets into each campaign's live run (run by the live actor,
``promod.actors.live``), ``promod.live.store`` holds their SQL, ``promod.live.report``
adds the ``live`` section of the campaign report::

    from promod.actors.messages import EventsStored
    wake(app.actor("live"), EventsStored())      # new events are stored: match them
"""
