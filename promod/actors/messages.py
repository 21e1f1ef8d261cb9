"""Messages every actor understands.

``Inspect`` asks an actor for a small dict describing its state; ``status``
and ``actors`` use it::

    info = await actor.ask(Inspect())
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Inspect:
    """Ask an actor to describe its state (JSON-able dict)."""
