"""Supervisor: starts children in order, restarts them by OTP rules, stops them in reverse.

Children are actors or services (anything with ``name`` and ``run(task_status=...)``,
such as the admin socket server). A child that exits is restarted or not by its
restart type; the strategy says which siblings go with it; restarts wait a
doubling, capped backoff; more than ``max_restarts`` restarts within
``restart_window`` seconds stops every child (reverse order) and raises
SupervisorGaveUp, which the daemon turns into a non-zero exit for systemd.

A child that stopped on an outage (``is_outage(error)``, e.g. a full disk) is an
operating condition, not a crash: it waits (state ``waiting``) with its own doubling
backoff up to ``outage_backoff_max``, does not count against ``max_restarts``, and is
started again at once by :meth:`Supervisor.retry_now` when the outage is over. One
that fails to start on an outage does not stop the others from starting.

    supervisor = Supervisor(
        [ChildSpec("ledger", Ledger), ChildSpec("notifier", Notifier)],
        strategy=Strategy.REST_FOR_ONE,
        max_restarts=5,
        restart_window=60.0,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)       # every child is up
        await supervisor.child("ledger").ask(...)
        await supervisor.stop()              # notifier stops, then ledger
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from promod.actors.base import Actor

__all__ = [
    "ChildSpec",
    "ChildStartFailed",
    "Restart",
    "Service",
    "Strategy",
    "Supervisor",
    "SupervisorGaveUp",
    "describe_error",
]

log = structlog.stdlib.get_logger("promod.supervisor")

_ERROR_LIMIT = 200


class Strategy(enum.Enum):
    """Which children are restarted when one exits and must be restarted."""

    ONE_FOR_ONE = "one_for_one"  # only that child
    ONE_FOR_ALL = "one_for_all"  # every child
    REST_FOR_ONE = "rest_for_one"  # that child and every child started after it


class Restart(enum.Enum):
    """When an exited child is restarted."""

    PERMANENT = "permanent"  # always
    TRANSIENT = "transient"  # only when it raised
    TEMPORARY = "temporary"  # never


@runtime_checkable
class Service(Protocol):
    """A supervised child: calls ``task_status.started()`` when ready."""

    name: str

    async def run(self, *, task_status: TaskStatus[None] = ...) -> None: ...


@dataclass
class ChildSpec:
    """How to build and treat one child."""

    name: str  # unique among the supervisor's children; set on Actor instances
    factory: Callable[[], Actor | Service]  # builds a fresh instance for every (re)start
    restart: Restart = Restart.PERMANENT  # when to restart it after it exits
    shutdown_timeout: float = 5.0  # seconds allowed for a graceful stop (Actor.on_stop included)


class SupervisorGaveUp(Exception):
    """Restart intensity exceeded (or a child failed to start): every child was stopped."""

    def __init__(self, message: str, *, child: str, last_error: str | None) -> None:
        super().__init__(message)
        self.child = child
        self.last_error = last_error


class ChildStartFailed(SupervisorGaveUp):
    """A child failed during the supervisor's initial start."""


def describe_error(error: BaseException) -> str:
    """``"ValueError: message"``, cut to a short length."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if len(text) > _ERROR_LIMIT:
        text = text[: _ERROR_LIMIT - 1] + "…"
    return text


class _NoStart(Exception):
    """Placeholder error for a child whose run() returned without signalling started."""


class _ChildStatus:
    """Forwards ``started()`` to the supervisor and remembers that it happened."""

    def __init__(self, outer: TaskStatus[None]) -> None:
        self._outer = outer
        self.fired = False

    def started(self, value: object = None) -> None:
        if not self.fired:
            self.fired = True
            self._outer.started()


@dataclass(eq=False)
class _Run:
    """One start of one child."""

    instance: Actor | Service
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    status: _ChildStatus | None = None
    error: BaseException | None = None
    superseded: bool = False  # stopped on purpose by the supervisor: its exit is not a crash

    @property
    def started(self) -> bool:
        return self.status is not None and self.status.fired


@dataclass(eq=False)
class _Slot:
    spec: ChildSpec
    index: int
    state: str = "new"  # new starting running restarting waiting stopping stopped failed
    run: _Run | None = None
    restarts: int = 0
    started_at: float | None = None
    last_error: str | None = None
    recent: deque[float] = field(default_factory=deque)  # restarts this child caused
    outage_waits: int = 0  # restarts in a row that waited for an outage to end

    def info(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "state": self.state,
            "restarts": self.restarts,
            "restart_type": self.spec.restart.value,
            "started_at": self.started_at,
            "last_error": self.last_error,
        }


_WAKE = None


class Supervisor:
    """Runs ``children`` under a restart ``strategy`` (see the module docstring)."""

    def __init__(
        self,
        children: list[ChildSpec],
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 5,
        restart_window: float = 60.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        name: str = "supervisor",
        is_outage: Callable[[BaseException], bool] | None = None,
        outage_backoff_max: float = 10.0,
    ) -> None:
        names = [spec.name for spec in children]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate child names: {', '.join(duplicates)}")
        if max_restarts < 0:
            raise ValueError("max_restarts must be >= 0")
        if restart_window <= 0:
            raise ValueError("restart_window must be > 0")
        if backoff_initial < 0 or backoff_max < backoff_initial:
            raise ValueError("need 0 <= backoff_initial <= backoff_max")
        self.name = name
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.on_event = on_event
        self.is_outage = is_outage
        self.outage_backoff_max = outage_backoff_max
        self.conditions: dict[str, str] = {}  # name -> what keeps the daemon from being ready
        self._retry = anyio.Event()
        self._slots = [_Slot(spec, i) for i, spec in enumerate(children)]
        self._by_name = {slot.spec.name: slot for slot in self._slots}
        self._restart_times: deque[float] = deque()
        self._phase = "new"  # new starting running stopping stopped gave_up
        self._stop_requested = anyio.Event()
        self._finished = anyio.Event()
        self._tg: TaskGroup | None = None
        self._exits_send: MemoryObjectSendStream[_Run | None] | None = None

    # -- introspection -----------------------------------------------------------

    def child(self, name: str) -> Actor | Service:
        """The current instance of child ``name`` (a new one after each restart)."""
        slot = self._by_name.get(name)
        if slot is None:
            raise KeyError(f"no child named {name!r}")
        if slot.run is None:
            raise KeyError(f"child {name!r} has not been started")
        return slot.run.instance

    def children_info(self) -> list[dict[str, Any]]:
        """Per child, in start order: name state restarts restart_type started_at last_error."""
        return [slot.info() for slot in self._slots]

    @property
    def healthy(self) -> bool:
        """True while running with no child down awaiting a restart and no condition set."""
        if self._phase != "running" or self.conditions:
            return False
        return not any(slot.state in ("starting", "restarting", "waiting") for slot in self._slots)

    @property
    def serving(self) -> bool:
        """True while running and every child that is down only waits for an outage to end."""
        if self._phase != "running":
            return False
        return not any(
            slot.state in ("starting", "restarting") and not slot.outage_waits
            for slot in self._slots
        )

    def set_condition(self, name: str, text: str | None) -> None:
        """Set (or with None clear) a condition that makes the supervisor not healthy."""
        if text is None:
            self.conditions.pop(name, None)
        else:
            self.conditions[name] = text

    def retry_now(self) -> None:
        """The outage is over: start every waiting child now, with a fresh backoff."""
        for slot in self._slots:
            slot.outage_waits = 0
        self._retry.set()
        self._retry = anyio.Event()

    @property
    def state(self) -> str:
        """new, starting, running, stopping, stopped or gave_up."""
        return self._phase

    # -- lifecycle -----------------------------------------------------------------

    async def stop(self) -> None:
        """Stop every child in reverse order; run() then returns normally."""
        if self._phase == "new":
            self._phase = "stopped"
            self._finished.set()
            return
        self._request_stop()
        await self._finished.wait()

    def _request_stop(self) -> None:
        if self._stop_requested.is_set():
            return
        self._stop_requested.set()
        if self._exits_send is not None:
            try:
                self._exits_send.send_nowait(_WAKE)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the children in order, signal started, supervise until stop() or giving up."""
        if self._phase != "new":
            raise RuntimeError(f"supervisor {self.name!r} has already run")
        self._phase = "starting"
        exits_send, exits_recv = anyio.create_memory_object_stream[_Run | None](math.inf)
        self._exits_send = exits_send
        failure: SupervisorGaveUp | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    failure = await self._start_all()
                    if failure is None:
                        self._phase = "running"
                        task_status.started()
                        failure = await self._supervise(exits_recv)
                finally:
                    if failure is None:
                        self._phase = "stopping"
                    with anyio.CancelScope(shield=True):
                        await self._stop_slots(reversed(self._slots))
        finally:
            self._tg = None
            exits_send.close()
            exits_recv.close()
            if self._phase != "gave_up":
                self._phase = "stopped"
            self._finished.set()
        if failure is not None:
            raise failure

    async def _start_all(self) -> SupervisorGaveUp | None:
        for slot in self._slots:
            if self._stop_requested.is_set():
                return None
            run = await self._start(slot)
            if not run.started and self._outage(run.error):
                # Queued for a restart that waits for the store; the others start now.
                log.warning(
                    "child waits for the store", child=slot.spec.name, error=slot.last_error
                )
                continue
            if not run.started:
                error = run.error or _NoStart("exited before signalling started")
                self._phase = "gave_up"
                self._emit("gave_up", {"child": slot.spec.name, "error": slot.last_error})
                log.error("child failed to start", child=slot.spec.name, error=slot.last_error)
                failure = ChildStartFailed(
                    f"child {slot.spec.name!r} failed to start: {describe_error(error)}",
                    child=slot.spec.name,
                    last_error=slot.last_error,
                )
                failure.__cause__ = error
                return failure
        return None

    async def _supervise(
        self, exits: MemoryObjectReceiveStream[_Run | None]
    ) -> SupervisorGaveUp | None:
        async for run in exits:
            if self._stop_requested.is_set():
                return None
            if run is None:
                continue
            slot = self._slot_of(run)
            if slot is None or slot.state != "restarting":
                continue
            failure = await self._restart(slot, run)
            if failure is not None:
                return failure
            if self._stop_requested.is_set():
                return None
        return None

    def _slot_of(self, run: _Run) -> _Slot | None:
        for slot in self._slots:
            if slot.run is run and not run.superseded:
                return slot
        return None

    # -- restarts ------------------------------------------------------------------

    def _outage(self, error: BaseException | None) -> bool:
        return error is not None and self.is_outage is not None and self.is_outage(error)

    async def _wait_outage(self, slot: _Slot) -> None:
        """Restart ``slot`` after a backoff that grows while the outage lasts."""
        slot.outage_waits += 1
        base = self.backoff_initial or 0.1
        delay = min(base * 2 ** (slot.outage_waits - 1), self.outage_backoff_max)
        slot.state = "waiting"
        log.warning(
            "child waiting for the store",
            child=slot.spec.name,
            error=slot.last_error,
            delay=round(delay, 3),
            attempt=slot.outage_waits,
        )
        self._emit(
            "child_waiting",
            {"child": slot.spec.name, "error": slot.last_error, "delay": delay},
        )
        retry = self._retry
        with anyio.move_on_after(delay):
            async with anyio.create_task_group() as tg:

                async def on_stop() -> None:
                    await self._stop_requested.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(on_stop)
                await retry.wait()
                tg.cancel_scope.cancel()
        if self._stop_requested.is_set():
            return
        slot.restarts += 1
        new_run = await self._start(slot)
        if not new_run.started:
            log.warning("restarted child failed to start", child=slot.spec.name)

    async def _restart(self, slot: _Slot, run: _Run) -> SupervisorGaveUp | None:
        if self._outage(run.error):
            await self._wait_outage(slot)
            return None
        now = anyio.current_time()
        window_start = now - self.restart_window
        self._restart_times.append(now)
        while self._restart_times and self._restart_times[0] <= window_start:
            self._restart_times.popleft()
        if len(self._restart_times) > self.max_restarts:
            return self._give_up(slot, run)

        slot.recent.append(now)
        while slot.recent and slot.recent[0] <= window_start:
            slot.recent.popleft()
        delay = min(self.backoff_initial * 2 ** (len(slot.recent) - 1), self.backoff_max)

        group = self._group(slot)
        for other in reversed(group):
            if other is not slot:
                await self._stop_slot(other)
        restarting = [s for s in group if s is slot or s.spec.restart is not Restart.TEMPORARY]
        for other in group:
            if other in restarting:
                other.state = "restarting"
        log.warning(
            "restarting child",
            child=slot.spec.name,
            error=slot.last_error,
            delay=round(delay, 3),
            restarted=[s.spec.name for s in restarting],
        )
        with anyio.move_on_after(delay):
            await self._stop_requested.wait()
        if self._stop_requested.is_set():
            return None

        for other in restarting:
            if self._stop_requested.is_set():
                return None
            other.restarts += 1
            new_run = await self._start(other)
            if not new_run.started:
                # Its exit event is queued: the next round restarts it and the rest of its group.
                log.warning("restarted child failed to start", child=other.spec.name)
                return None
        self._emit(
            "child_restarted",
            {
                "child": slot.spec.name,
                "restarts": slot.restarts,
                "error": slot.last_error,
                "delay": delay,
                "restarted": [s.spec.name for s in restarting],
                "strategy": self.strategy.value,
            },
        )
        return None

    def _group(self, slot: _Slot) -> list[_Slot]:
        if self.strategy is Strategy.ONE_FOR_ALL:
            return list(self._slots)
        if self.strategy is Strategy.REST_FOR_ONE:
            return self._slots[slot.index :]
        return [slot]

    def _give_up(self, slot: _Slot, run: _Run) -> SupervisorGaveUp:
        self._phase = "gave_up"
        message = (
            f"child {slot.spec.name!r} exited and restarts exceeded {self.max_restarts} "
            f"in {self.restart_window:g}s; last error: {slot.last_error}"
        )
        log.error(
            "supervisor gave up",
            supervisor=self.name,
            child=slot.spec.name,
            error=slot.last_error,
            max_restarts=self.max_restarts,
            restart_window=self.restart_window,
        )
        self._emit(
            "gave_up",
            {
                "child": slot.spec.name,
                "error": slot.last_error,
                "max_restarts": self.max_restarts,
                "restart_window": self.restart_window,
            },
        )
        failure = SupervisorGaveUp(message, child=slot.spec.name, last_error=slot.last_error)
        failure.__cause__ = run.error
        return failure

    def _emit(self, kind: str, info: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(kind, info)
        except Exception:
            log.exception("supervisor on_event callback failed", kind=kind)

    # -- one child -------------------------------------------------------------------

    async def _start(self, slot: _Slot) -> _Run:
        """Build and start a fresh instance; returns once it signalled started or exited."""
        assert self._tg is not None
        instance = slot.spec.factory()
        if isinstance(instance, Actor):
            instance.name = slot.spec.name
            instance.shutdown_timeout = slot.spec.shutdown_timeout
        run = _Run(instance)
        slot.run = run
        slot.state = "starting"
        await self._tg.start(self._child_main, slot, run)
        if run.started and not run.done.is_set():
            slot.state = "running"
            slot.started_at = time.time()
        return run

    async def _child_main(
        self, slot: _Slot, run: _Run, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        status = _ChildStatus(task_status)
        run.status = status
        try:
            with run.scope:
                await run.instance.run(task_status=status)
        except Exception as exc:
            run.error = exc
        finally:
            run.done.set()
        if not status.fired:
            run.error = run.error or _NoStart("exited before signalling started")
        if not run.superseded:
            self._record_exit(slot, run)
        if not status.fired:
            task_status.started()
        if self._exits_send is not None:
            try:
                self._exits_send.send_nowait(run)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass

    def _record_exit(self, slot: _Slot, run: _Run) -> None:
        error = run.error
        if error is not None:
            slot.last_error = describe_error(error)
            log.warning(
                "child crashed", child=slot.spec.name, error=slot.last_error, exc_info=error
            )
        else:
            log.info("child exited", child=slot.spec.name)
        restart = slot.spec.restart
        if self._phase not in ("starting", "running") or self._stop_requested.is_set():
            slot.state = "failed" if error is not None else "stopped"
        elif restart is Restart.PERMANENT or (restart is Restart.TRANSIENT and error is not None):
            slot.state = "restarting"
        else:
            slot.state = "failed" if error is not None else "stopped"

    async def _stop_slots(self, slots: Iterable[_Slot]) -> None:
        for slot in slots:
            await self._stop_slot(slot)

    async def _stop_slot(self, slot: _Slot) -> None:
        """Stop the child gracefully within its shutdown_timeout, then by cancellation."""
        run = slot.run
        if run is None:
            return
        if run.done.is_set():
            run.superseded = True
            if slot.state in ("starting", "running", "restarting", "stopping"):
                slot.state = "failed" if run.error is not None else "stopped"
            return
        run.superseded = True
        slot.state = "stopping"
        if isinstance(run.instance, Actor):
            run.instance.request_stop()
        else:
            run.scope.cancel()
        with anyio.move_on_after(slot.spec.shutdown_timeout, shield=True):
            await run.done.wait()
        if not run.done.is_set():
            log.warning("child did not stop in time; cancelling", child=slot.spec.name)
            run.scope.cancel()
            with anyio.CancelScope(shield=True):
                await run.done.wait()
        if run.error is not None:
            slot.last_error = describe_error(run.error)
            slot.state = "failed"
        else:
            slot.state = "stopped"
