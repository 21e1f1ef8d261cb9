"""``promod run``: assemble the app, supervise actors and servers, handle signals.

Start-up order: config (already validated), logging, plugins, store, commands,
then the supervisor starts the actors and, last, the servers; only then, with the
signal handlers in place, are the "ready" log line and ``READY=1`` sent.
SIGTERM/SIGINT stop accepting work, drain and exit 0; SIGHUP re-reads the config
(a broken one is logged and the old one kept)::

    exit_code = anyio.run(serve, config_path, config)
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from promod import __version__, logs, systemd
from promod.actors.base import ActorNotRunning
from promod.actors.clearance import ClearanceActor
from promod.actors.codepool import CodePoolActor
from promod.actors.crmsync import CrmSyncActor
from promod.actors.ledger import LedgerActor
from promod.actors.messages import Channels
from promod.actors.notifier import NotifierActor
from promod.actors.scheduler import SchedulerActor
from promod.actors.supervisor import ChildSpec, ChildStartFailed, Supervisor, SupervisorGaveUp
from promod.admin.audit import AuditLog
from promod.admin.registry import CommandRegistry
from promod.admin.server import AdminServer
from promod.app import App
from promod.campaigns.segments import register_sql_functions
from promod.campaigns.store_policy import currencyless_counters_sync
from promod.clock import Clock, ManualClock, SystemClock, utc_iso
from promod.config import Config, ConfigError, load_config
from promod.crm.connector import ConnectorConfigError, build_connectors
from promod.http.server import HttpService
from promod.ledger.caps import migrate_currencyless_sync
from promod.limits import (
    ADMIN_CONNECTIONS,
    DescriptorBudget,
    install_accept_error_filter,
    raise_nofile,
)
from promod.notify.channel import Channel, Message
from promod.notify.outbox import new_event_id
from promod.notify.store_alerts import record_outage_sync, record_restart_sync
from promod.plugins.host import PluginError, PluginHost
from promod.store.database import Database, SchemaTooNew
from promod.store.health import StoreMonitor, StoreUnavailable, is_outage
from promod.store.seam import legacy_connection

log = logs.get_logger("promod.daemon")

EXIT_OK = 0
EXIT_STARTUP = 1  # bad config, a plugin that cannot load, a store that cannot open
EXIT_GAVE_UP = 70  # the supervisor gave up after too many restarts (EX_SOFTWARE)

# Actors in start order; servers come after them so work is only accepted once
# every actor is up, and they stop first.
ACTORS: tuple[tuple[str, Any], ...] = (
    ("ledger", LedgerActor),
    ("codepool", CodePoolActor),
    ("notifier", NotifierActor),
    ("clearance", ClearanceActor),
    ("scheduler", SchedulerActor),
    ("crmsync", CrmSyncActor),
)


def make_clock(env: dict[str, str]) -> Clock:
    """The system clock, or a manual one started at ``$PROMOD_TEST_CLOCK`` (epoch seconds)."""
    start = env.get("PROMOD_TEST_CLOCK")
    if start:
        return ManualClock(start=float(start))
    return SystemClock()


def build_registry(plugins: PluginHost) -> CommandRegistry:
    registry = CommandRegistry()
    for plugin, cmd in plugins.commands:
        try:
            registry.register(cmd)
        except ValueError as exc:
            raise PluginError(f"plugin {plugin!r}: {exc}") from exc
    return registry


def child_specs(app: App) -> list[ChildSpec]:
    specs = [ChildSpec(name=name, factory=_actor_factory(cls, app)) for name, cls in ACTORS]
    specs.append(
        ChildSpec(
            name="admin",
            factory=lambda: AdminServer(
                app,
                app.commands,
                app.config.daemon.admin_socket,
                app.config.daemon.admin_socket_mode,
                max_connections=(app.limits.admin_connections if app.limits else ADMIN_CONNECTIONS),
            ),
        )
    )
    if app.config.http.enabled:
        specs.append(ChildSpec(name="http", factory=lambda: HttpService(app)))
    return specs


def _actor_factory(cls: Any, app: App) -> Any:
    return lambda: cls(app)


def _changed_restart_keys(old: Config, new: Config) -> list[str]:
    """Changed keys a reload cannot apply (the running value stays until a restart)."""
    changed = []
    if old.daemon.state_dir != new.daemon.state_dir:
        changed.append("daemon.state_dir")
    if old.daemon.admin_socket != new.daemon.admin_socket:
        changed.append("daemon.admin_socket")
    if old.store != new.store:
        changed.append("store")
    # Tokens, body limit and trusted proxies are read per request; only the socket
    # itself needs a restart.
    if (old.http.enabled, old.http.host, old.http.port) != (
        new.http.enabled,
        new.http.host,
        new.http.port,
    ):
        changed.append("http.listen")
    if (old.http.max_connections, old.http.request_timeout) != (
        new.http.max_connections,
        new.http.request_timeout,
    ):
        changed.append("http.max_connections/request_timeout")
    if old.plugins != new.plugins:
        changed.append("plugins")
    if old.channels != new.channels:
        changed.append("channels")
    return changed


async def reload_config(app: App, notifier: systemd.Notifier) -> bool:
    """SIGHUP: apply a valid config, keep the old one on any error."""
    notifier.reloading()
    try:
        try:
            # Channel and connector options are checked by the running plugins' models.
            new = await anyio.to_thread.run_sync(
                functools.partial(load_config, app.config_path, plugins=app.plugins)
            )
        except ConfigError as exc:
            log.error(
                "config_reload_rejected",
                path=str(app.config_path),
                errors=[f"{i.path}: {i.message}" if i.path else i.message for i in exc.issues],
            )
            return False
        needs_restart = _changed_restart_keys(app.config, new)
        if needs_restart:
            log.warning("config_reload_needs_restart", keys=needs_restart)
        if new.log.level != app.config.log.level:
            logs.set_level(new.log.level)
        app.config = new
        app.reloads += 1
        log.info("config_reloaded", path=str(app.config_path))
        return True
    finally:
        notifier.ready(status=_status_line(app))


def _status_line(app: App) -> str:
    n = len(ACTORS)
    return f"serving: {n} actors, admin socket {app.config.daemon.admin_socket}"


HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""Handled from just before ``READY=1`` on; before that they have their default effect."""


async def serve(config_path: Path, config: Config, env: dict[str, str] | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; return the process exit code."""

    notifier = systemd.Notifier.from_env()
    environ = dict(os.environ if env is None else env)
    soft, hard = raise_nofile()
    install_accept_error_filter()
    limits = DescriptorBudget.for_limit(soft, http_max=config.http.max_connections)
    log.info("limits", nofile_hard=hard, **limits.to_dict())
    try:
        plugins = PluginHost.load(config.plugins.dirs, config.plugins.disable, environ=environ)
        registry = build_registry(plugins)
    except PluginError as exc:
        log.error("plugin_error", error=str(exc))
        return EXIT_STARTUP
    try:
        # Each connector type checks its [crm.NAME] options now: a bad one names its key.
        for connector in build_connectors(config.crm, plugins.crm_connector_types).values():
            await connector.close()
    except ConnectorConfigError as exc:
        log.error("config_error", key=exc.key, error=exc.message)
        print(f"promod: {config_path}: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    try:
        db = await _open_store(config, notifier)
    except SchemaTooNew as exc:
        log.error("store_refused", error=str(exc))
        return EXIT_STARTUP
    except Exception as exc:
        log.error("store_open_failed", path=str(config.store.path), error=repr(exc))
        return EXIT_STARTUP

    await db.register_functions(register_sql_functions)
    site_timezone = config.daemon.timezone
    try:
        rekeyed = await _rekey_policy_counters(db, site_timezone, notifier)
    except Exception as exc:
        log.error("store_migration_failed", error=repr(exc))
        await db.close()
        return EXIT_STARTUP
    if rekeyed:
        log.info("policy_counters_keyed_by_currency", rows=rekeyed)
    app = App(
        config=config,
        config_path=config_path,
        db=db,
        plugins=plugins,
        commands=registry,
        audit=AuditLog(db),
        clock=make_clock(environ),
        limits=limits,
    )
    restarts = RestartAlerts(app)
    supervisor = Supervisor(
        child_specs(app),
        max_restarts=config.supervisor.max_restarts,
        restart_window=config.supervisor.restart_window,
        backoff_initial=config.supervisor.backoff_initial,
        backoff_max=config.supervisor.backoff_max,
        on_event=restarts.report,
        is_outage=is_outage,
    )
    app.supervisor = supervisor
    monitor = store_monitor(app, notifier)
    exit_code = EXIT_OK
    try:
        async with anyio.create_task_group() as tg:

            async def supervise(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
                nonlocal exit_code
                try:
                    await supervisor.run(task_status=task_status)
                except ChildStartFailed:
                    raise  # before started(): tg.start() raises it, exit 1
                except SupervisorGaveUp as exc:
                    log.critical("supervisor_gave_up", error=str(exc))
                    exit_code = EXIT_GAVE_UP
                    tg.cancel_scope.cancel()

            try:
                await tg.start(supervise)
            except Exception as exc:
                log.error("startup_failed", error=repr(exc))
                exit_code = EXIT_STARTUP
                tg.cancel_scope.cancel()
                return exit_code
            # Handlers first: once "ready" is announced, a SIGTERM must drain, not kill.
            with anyio.open_signal_receiver(*HANDLED_SIGNALS) as signals:
                app.ready = True
                plugins.startup(app)
                log.info("ready", version=__version__, config=str(config_path), pid=os.getpid())
                notifier.ready(status=_status_line(app))
                tg.start_soon(_watchdog, app, notifier)
                tg.start_soon(restarts.run)
                tg.start_soon(monitor.run)
                await _signals(signals, app, notifier, tg.cancel_scope)
    finally:
        with anyio.CancelScope(shield=True):
            plugins.shutdown(app)
            await db.close()
    log.info("stopped", exit_code=exit_code)
    return exit_code


OPEN_RETRY_MAX = 30.0  # seconds between attempts to open a store that has no room


async def _open_store(config: Config, notifier: systemd.Notifier) -> Database:
    """Open the store; on a full (or read-only) disk, report it and try again with backoff."""
    delay = 1.0
    while True:
        try:
            return await Database.open(config.store.path)
        except StoreUnavailable as exc:
            log.error(
                "store_unavailable",
                error=str(exc),
                reason=exc.reason,
                path=str(exc.path),
                free_bytes=exc.free,
                retry_in=delay,
            )
            notifier.status(f"waiting: {exc}")
        await anyio.sleep(delay)
        delay = min(delay * 2, OPEN_RETRY_MAX)


async def _rekey_policy_counters(
    db: Database, site_timezone: str, notifier: systemd.Notifier
) -> int:
    """Key old policy counters by currency; on a store outage, wait for room first.

    Nothing is granted with counters of the old shape: with counters to re-key and a
    store that takes no writes, start-up waits (probing) until it does.
    """

    if not await db.run(currencyless_counters_sync, write=False):
        return 0
    if db.health.problem is not None:
        log.error("store_unavailable_at_start", error=str(db.health.problem), waiting_for="rekey")
        notifier.status(f"waiting: {db.health.problem}")
        monitor = StoreMonitor(
            db.health, db.reserve, alert=_no_alert, probe=db.probe, on_change=lambda _p: None
        )
        await monitor.until_writable()
    # The ledger's re-keying still takes the connection.
    return await db.run(lambda tx: migrate_currencyless_sync(legacy_connection(tx), site_timezone))


async def _no_alert(problem: StoreUnavailable) -> None:
    return None


def store_monitor(app: App, notifier: systemd.Notifier) -> StoreMonitor:
    """The monitor of ``app``'s store: alert on an outage, restart waiting actors after it."""
    db = app.db

    async def alert(problem: StoreUnavailable) -> None:
        now = app.clock.now()
        event_id = new_event_id()
        payload = {**problem.to_dict(), "message": str(problem)}
        sent = await _send_outage_alert(app, event_id, payload, now)
        await db.run(
            functools.partial(
                record_outage_sync, event_id=event_id, payload=payload, now=now, sent=sent
            ),
            essential=True,
        )

    async def probe() -> None:
        await db.probe()

    def on_change(problem: StoreUnavailable | None) -> None:
        supervisor = app.supervisor
        if problem is None:
            notifier.status(_status_line(app))
            if supervisor is not None:
                supervisor.set_condition("store", None)
                supervisor.retry_now()
            return
        notifier.status(f"degraded: {problem}")
        if supervisor is not None:
            supervisor.set_condition("store", str(problem))

    return StoreMonitor(db.health, db.reserve, alert=alert, probe=probe, on_change=on_change)


ALERT_SEND_TIMEOUT = 10.0  # seconds a channel may take for the store.unavailable alert


async def _send_outage_alert(app: App, event_id: str, payload: dict[str, Any], now: float) -> bool:
    """Send ``store.unavailable`` straight through the notifier's open channels.

    The outbox cannot take new deliveries while the store takes no writes, so the
    alert does not wait for it; True when every routed channel accepted it.
    """
    routed = app.config.alerts.get("store.unavailable", ())
    if not routed:
        return True
    try:
        channels: dict[str, Channel] = await app.actor("notifier").ask(Channels(), timeout=1.0)
    except (ActorNotRunning, TimeoutError):
        channels = {}
    data = {"event_id": event_id, "type": "store.unavailable", "occurred_at": utc_iso(now)}
    data.update(payload)
    message = Message(event_id, "store.unavailable", "alert", data)
    every = True
    for name in dict.fromkeys(routed):
        channel = channels.get(name)
        if channel is None:
            every = False
            continue
        try:
            with anyio.fail_after(ALERT_SEND_TIMEOUT):
                await channel.send(message)
        except Exception as exc:
            every = False
            log.error("store_alert_not_sent", channel=name, error=repr(exc))
        else:
            log.info("store_alert_sent", channel=name, event_id=event_id)
    return every


class RestartAlerts:
    """Logs supervisor events and records an ``actor.restarted`` event per restart,
    for the notifier to route per ``[alerts]``."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._send, self._receive = anyio.create_memory_object_stream[dict[str, Any]](100)

    def report(self, kind: str, info: dict[str, Any]) -> None:
        log.warning(kind, **info)
        if kind == "child_restarted":
            try:
                self._send.send_nowait(dict(info))
            except anyio.WouldBlock:  # a restart storm: the log has them all
                pass

    async def run(self) -> None:
        async for info in self._receive:
            payload = {
                "actor": info.get("child"),
                "restarts": info.get("restarts"),
                "error": info.get("error"),
            }
            now = self.app.clock.now()
            try:
                await self.app.db.run(
                    functools.partial(record_restart_sync, payload=payload, now=now)
                )
            except Exception as exc:  # the store is what failed: the log line stays
                log.error("restart_alert_failed", error=repr(exc))


async def _watchdog(app: App, notifier: systemd.Notifier) -> None:
    period = notifier.watchdog_period()
    if not period:
        return
    while True:
        # A store outage keeps the pings going: the daemon still serves reads, status and
        # the kill switch, and a restart by systemd would not bring disk space back.
        if app.supervisor is not None and app.supervisor.serving and not app.shutting_down:
            notifier.watchdog_ping()
        await anyio.sleep(period / 2)


async def _signals(
    signals: AsyncIterator[signal.Signals],
    app: App,
    notifier: systemd.Notifier,
    scope: anyio.CancelScope,
) -> None:
    """SIGHUP reloads; SIGTERM/SIGINT drain the supervisor and cancel ``scope``."""
    async for signum in signals:
        if signum == signal.SIGHUP:
            await reload_config(app, notifier)
            continue
        log.info("stopping", signal=signal.Signals(signum).name)
        notifier.stopping(status="stopping: draining")
        app.shutting_down = True
        assert app.supervisor is not None
        with anyio.move_on_after(app.config.daemon.shutdown_timeout) as drain:
            await app.supervisor.stop()
        if drain.cancelled_caught:
            log.error("drain_timeout", timeout=app.config.daemon.shutdown_timeout)
        scope.cancel()
        return
