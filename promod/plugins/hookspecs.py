"""The plugin contract: every hook promod calls, one ``@hookspec`` each.

The argument names are the contract (pluggy passes arguments by name). Hooks are
synchronous; ``register_*`` hooks run once at start-up and return objects whose
methods may be ``async``. A specification has no body: pluggy calls the
implementations, never the spec. Plugin authors implement them with
``promod.hookimpl``::

    from promod import hookimpl

    @hookimpl
    def promod_register_reward_providers():
        return [MyVoucherProvider()]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from promod.app import App

PROJECT = "promod"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def promod_register_reward_providers() -> list[Any] | None:
    """Return reward providers; each has a ``name`` and ``async issue(grant)``."""


@hookspec
def promod_register_channels() -> list[Any] | None:
    """Return channel types; each has a ``type`` and ``create(name, options)``."""


@hookspec
def promod_register_crm_connectors() -> list[Any] | None:
    """Return CRM connector types: ``type``, ``options`` model, ``create(name, options)``."""


@hookspec
def promod_register_commands() -> list[Any] | None:
    """Return admin socket commands (``promod.admin.registry.Command``)."""


@hookspec
def promod_eligibility_check(customer: Any, campaign: Any) -> str | None:
    """Veto a customer before a grant by returning a reason; None lets it pass."""


@hookspec
def promod_startup(app: App) -> None:
    """Called once when the daemon has started all its actors and servers."""


@hookspec
def promod_shutdown(app: App) -> None:
    """Called once when the daemon stops, before the store is closed."""
