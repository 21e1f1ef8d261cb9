"""Conditional execution (clearance): the site approves a run's targets before they are granted.

:mod:`promod.clearance.store` holds the rules over the database (announce, answer,
decide at the deadline, counts); :mod:`promod.clearance.http` the two HTTP routes;
:mod:`promod.clearance.commands` the operators' admin commands. The clearance actor
(:mod:`promod.actors.clearance`) drives announcements and deadlines::

    summary = summary_sync(conn, run_id)      # approved, rejected, unanswered, granted, ...
"""
