"""Every message an actor understands, in one module: senders import this, never a receiver.

A sender holds an :class:`~promod.actors.refs.ActorRef` and a message from here::

    info = await app.actor("ledger").ask(Inspect())
    wake(app.actor("scheduler"), Kick())

Messages that only say "look again now" derive from :class:`Wakeup`: equal ones
still waiting in a mailbox are merged (see :mod:`promod.actors.refs`), so a
burst of wakes costs the receiver one pass, not one each.

``Settle`` makes an actor do, now, every piece of work that is due (see
:mod:`promod.actors.settle`)::

    await app.actor("ledger").ask(Settle())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from promod.campaigns.store import CampaignRow

__all__ = [
    "Channels",
    "EventsStored",
    "Inspect",
    "IssuePending",
    "JobFor",
    "Kick",
    "LiveTick",
    "ProcessDue",
    "Recheck",
    "RulesChanged",
    "RunsChanged",
    "Settle",
    "Sweep",
    "Wake",
    "Wakeup",
]


@dataclass(frozen=True)
class Inspect:
    """Ask an actor to describe its state (JSON-able dict); ``status`` and ``actors`` use it."""


@dataclass(frozen=True)
class Wakeup:
    """Base of the messages that only ask the receiver to look again now.

    Told (never asked) through :func:`promod.actors.refs.wake`; an equal one
    still queued in the mailbox absorbs the next.
    """


# -- scheduler -----------------------------------------------------------------


@dataclass(frozen=True)
class Kick(Wakeup):
    """To the scheduler: something changed (a launch, a resume, the kill switch)."""


# -- ledger --------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessDue(Wakeup):
    """To the ledger: grant whatever is due now in every running campaign.

    Asked, it answers what was done (``{"granted": n, "refused:<reason>": n, …}``).
    """


@dataclass(frozen=True)
class IssuePending(Wakeup):
    """To the ledger: issue (or retry) reserved grants of providers outside the database."""


@dataclass(frozen=True)
class JobFor:
    """Ask the ledger for a campaign run's :class:`~promod.ledger.grants.GrantJob`.

    The job carries the current config, plugins and the providers the ledger
    takes as out of stock; ``campaign.simulate`` runs it without writing.
    """

    campaign: CampaignRow
    run_id: int


# -- live engine ---------------------------------------------------------------


@dataclass(frozen=True)
class EventsStored(Wakeup):
    """New events are in the ``events`` table, after the receiver's cursor; look now.

    To the live actor, from ``POST /v1/events`` once the batch committed; the live
    actor passes it on to every actor named in ``App.event_listeners`` after a pass
    that moved its cursor over new events (whatever stored them).
    """


@dataclass(frozen=True)
class LiveTick:
    """Ask the live actor to catch up on events and close the inaction windows due at
    ``now`` (the scheduler's tick); answers ``{"timers_fired": n, …}``."""

    now: float


# -- clearance -----------------------------------------------------------------


@dataclass(frozen=True)
class RunsChanged(Wakeup):
    """To the clearance actor: a run waiting for clearance was created or changed."""


# -- notifier ------------------------------------------------------------------


@dataclass(frozen=True)
class Wake(Wakeup):
    """To the notifier: new outbox events or deliveries are waiting; look now."""

    channel: str | None = None


@dataclass(frozen=True)
class Channels:
    """Ask the notifier for its open channels by name (the outage alert sends through them)."""


# -- tagger --------------------------------------------------------------------


@dataclass(frozen=True)
class RulesChanged(Wakeup):
    """To the tagger: tag rules were applied; check the new versions over every customer."""


@dataclass(frozen=True)
class Recheck(Wakeup):
    """To the tagger, from its own timer: full checks of rules are due now."""


# -- codepool ------------------------------------------------------------------


@dataclass(frozen=True)
class Sweep:
    """To the codepool actor: expire every code past its expiry now (answers the counts)."""


@dataclass(frozen=True)
class Settle:
    """Do every piece of work that is due now, then answer (``Actor.settle``)."""
