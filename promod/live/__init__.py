"""Live-action campaigns: rewards triggered by what customers do, or fail to do, in a window.

``promod.live.match`` evaluates a trigger's filters and thresholds exactly,
``promod.live.index`` finds the running campaigns listening to an event name,
``promod.live.engine`` matches stored events, keeps inaction timers and fires
targets into each campaign's live run, ``promod.live.report`` adds the ``live``
section of the campaign report::

    from promod.live.engine import live_engine
    await live_engine(app).process()
"""
