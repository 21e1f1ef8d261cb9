"""Messages every actor understands.

``Inspect`` asks an actor for a small dict describing its state; ``status``
and ``actors`` use it. ``Settle`` makes an actor do, now, every piece of work
that is due (see :mod:`promod.actors.settle`)::

    info = await actor.ask(Inspect())
    await actor.ask(Settle())
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Inspect:
    """Ask an actor to describe its state (JSON-able dict)."""


@dataclass(frozen=True)
class Settle:
    """Do every piece of work that is due now, then answer (``Actor.settle``)."""
