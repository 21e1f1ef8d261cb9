"""Plugin isolation: the daemon's circuit breakers and what an opening circuit does.

One :class:`~promod.plugins.circuit.CircuitBoard` per app, kept in
``app.circuits`` and made on first use from ``[plugins] circuit_*``. Its
breakers are named ``provider:NAME`` (reward providers outside the database, used
by the ledger), ``channel:NAME`` (channel instances, used by the notifier) and
``crm:NAME``. ``health(app, plugins)`` adds each plugin's circuits to what
``promodctl plugins`` shows::

    breaker = board(app).get(provider_circuit("partner_voucher"))
    reward = await breaker.call(provider.issue, grant)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from promod.logs import get_logger
from promod.notify.outbox import enqueue_sync
from promod.plugins.circuit import CircuitBoard, CircuitBreaker, CircuitState
from promod.store.seam import TxLike

if TYPE_CHECKING:
    from promod.app import App

__all__ = [
    "CIRCUIT_OPEN_EVENT",
    "board",
    "channel_circuit",
    "circuit_open_payload",
    "closed_again",
    "health",
    "newly_opened",
    "provider_circuit",
    "record_circuit_open_sync",
]

log = get_logger("promod.plugins.isolation")

CIRCUIT_OPEN_EVENT = "plugin.circuit_open"


def provider_circuit(provider: str) -> str:
    return f"provider:{provider}"


def channel_circuit(channel: str) -> str:
    return f"channel:{channel}"


def _log_change(breaker: CircuitBreaker, old: CircuitState, new: CircuitState) -> None:
    fields: dict[str, Any] = {"circuit": breaker.name, "was": old.value, "now": new.value}
    if new is CircuitState.OPEN:
        last = breaker.recent_failures[-1:]
        log.warning(
            "circuit_opened",
            retry_in=breaker.cooldown,
            error=last[0].error if last else None,
            **fields,
        )
    else:
        log.info("circuit_state", **fields)


def board(app: App) -> CircuitBoard:
    """The app's circuit board, made on first use with the ``[plugins]`` settings."""
    if app.circuits is not None:
        return app.circuits
    settings = app.config.plugins
    made = CircuitBoard(
        threshold=int(settings.circuit_threshold),
        window=float(settings.circuit_window),
        cooldown=float(settings.circuit_cooldown),
        on_change=_log_change,
    )
    app.circuits = made
    return made


def newly_opened(app: App, breaker: CircuitBreaker) -> tuple[bool, bool]:
    """``(opened, alert)``: is this a new opening of ``breaker`` not handled yet, and
    should it be announced (not when a probe failed and it was open before)?"""
    handled = app.circuits_handled
    alerted = app.circuits_alerted
    if breaker.opened <= handled.get(breaker.name, 0):
        return False, False
    handled[breaker.name] = breaker.opened
    if breaker.name in alerted:
        return True, False
    alerted.add(breaker.name)
    return True, True


def closed_again(app: App, breaker: CircuitBreaker) -> None:
    """The circuit closed: its next opening is announced again."""
    app.circuits_alerted.discard(breaker.name)


def circuit_open_payload(breaker: CircuitBreaker, campaigns: Iterable[str] = ()) -> dict[str, Any]:
    """The ``plugin.circuit_open`` alert body."""
    kind, _, name = breaker.name.partition(":")
    recent = breaker.recent_failures
    return {
        "circuit": breaker.name,
        "kind": kind,
        "name": name,
        "error": recent[-1].error if recent else None,
        "failures": len(recent),
        "cooldown": breaker.cooldown,
        "campaigns": sorted(campaigns),
    }


def record_circuit_open_sync(
    conn: TxLike, breaker: CircuitBreaker, *, now: float, campaigns: Iterable[str] = ()
) -> str:
    """Enqueue the ``plugin.circuit_open`` alert in the caller's transaction."""
    return enqueue_sync(conn, CIRCUIT_OPEN_EVENT, circuit_open_payload(breaker, campaigns), now=now)


def health(app: App, plugins: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``plugins`` (``PluginHost.describe()``) with each one's ``health``.

    ``health = {"state": "ok" | "half_open" | "open", "circuits": [snapshot, ...]}``:
    the circuits of the providers, channel instances and connectors it registered
    (a circuit appears once it has been used).
    """
    circuits = board(app)
    channels: Mapping[str, Any] = getattr(getattr(app, "config", None), "channels", {}) or {}
    crm: Mapping[str, Any] = getattr(getattr(app, "config", None), "crm", {}) or {}
    owners: dict[str, str] = {}  # "kind:NAME" registered -> circuit name
    for breaker in circuits:
        kind, _, name = breaker.name.partition(":")
        if kind == "provider":
            owners[breaker.name] = f"provider:{name}"
        elif kind == "channel" and name in channels:
            owners[breaker.name] = f"channel:{channels[name].type}"
        elif kind == "crm" and name in crm:
            owners[breaker.name] = f"connector:{crm[name].connector}"
    out = []
    for plugin in plugins:
        registers = set(plugin.get("registers") or ())
        mine = [b.snapshot() for b in circuits if owners.get(b.name) in registers]
        states = {snap["state"] for snap in mine}
        state = "open" if "open" in states else "half_open" if "half_open" in states else "ok"
        out.append({**plugin, "health": {"state": state, "circuits": mine}})
    return out
