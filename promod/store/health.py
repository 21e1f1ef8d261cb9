"""Store outages: a full disk, a read-only one or an I/O error is a condition, not a crash.

Owns the classification of storage errors, the store's health (``available`` or the
problem with its path and free space), the space reserve kept beside the database
for the writes that must work on a full disk (the kill switch, audit, the
``store.unavailable`` alert), and the monitor that reports an outage and notices
when it is over::

    health = StoreHealth(Path("/var/lib/promod/promod.db"))
    try:
        ...  # a write
    except sqlite3.OperationalError as exc:
        if outage_reason(exc):
            raise health.failed(exc) from exc   # StoreUnavailable: "disk full: ... free"
    reserve = Reserve(Path("/var/lib/promod/promod.db.reserve"))
    reserve.ensure()    # False while there is no room for it

A write refused this way has been rolled back; the supervisor restarts an actor that
stopped on it with a growing pause that does not count against its restart limit,
and the monitor (:class:`StoreMonitor`) probes until the reserve can be laid down
again and a write succeeds.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from promod.logs import get_logger

__all__ = [
    "RESERVE_BYTES",
    "Reserve",
    "StoreHealth",
    "StoreMonitor",
    "StoreUnavailable",
    "free_bytes",
    "is_outage",
    "outage_reason",
]

log = get_logger("promod.store")

RESERVE_BYTES = 4 * 1024 * 1024  # kept allocated beside the database, freed for essential writes

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_FULL = 13
_SQLITE_REASONS = {
    _SQLITE_FULL: "disk full",
    _SQLITE_READONLY: "read-only",
    _SQLITE_IOERR: "I/O error",
}
_OS_REASONS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk full",
    errno.EROFS: "read-only",
    errno.EIO: "I/O error",
}


class StoreUnavailable(sqlite3.OperationalError):
    """The store cannot take writes: ``reason`` (disk full, read-only, I/O error) at ``path``."""

    def __init__(self, reason: str, path: Path, free: int | None, detail: str = "") -> None:
        self.reason = reason
        self.path = path
        self.free = free
        self.detail = detail
        shown = "unknown" if free is None else _size(free)
        super().__init__(f"{reason}: {path} ({shown} free)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "path": str(self.path),
            "free_bytes": self.free,
            "error": self.detail,
        }


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def outage_reason(exc: BaseException) -> str | None:
    """ "disk full", "read-only" or "I/O error" when ``exc`` is one of those, else None."""
    if isinstance(exc, StoreUnavailable):
        return exc.reason
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and (code & 0xFF) in _SQLITE_REASONS:
            return _SQLITE_REASONS[code & 0xFF]
        text = str(exc).lower()
        if "disk is full" in text:
            return "disk full"
        if "readonly database" in text:
            return "read-only"
        if "disk i/o error" in text:
            return "I/O error"
        return None
    if isinstance(exc, OSError) and exc.errno in _OS_REASONS:
        return _OS_REASONS[exc.errno]
    return None


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` (or one inside an exception group, or its cause) is a store outage."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if outage_reason(item) is not None:
            return True
        if isinstance(item, BaseExceptionGroup):
            stack.extend(item.exceptions)
        if item.__cause__ is not None:
            stack.append(item.__cause__)
    return False


def _file_system_reason(path: Path) -> str | None:
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return "read-only"
    if st.f_bavail * st.f_frsize < 64 * 1024:
        return "disk full"
    return None


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the file system holding ``path``."""
    try:
        st = os.statvfs(path if path.is_dir() else path.parent)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _allocate(fd: int, size: int) -> None:
    """Give ``fd`` ``size`` bytes of real blocks (fallocate, else zeros written and synced)."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
    chunk = bytes(64 * 1024)
    written = 0
    while written < size:
        written += os.write(fd, chunk[: size - written])
    os.fsync(fd)


class Reserve:
    """A file of ``size`` allocated bytes, given back to the file system when space runs out."""

    def __init__(self, path: Path, size: int = RESERVE_BYTES) -> None:
        self.path = path
        self.size = size
        self.present = False
        self.error: OSError | None = None  # why the last ensure() failed

    def ensure(self) -> bool:
        """Lay the reserve down (written, not sparse) unless it is there; False without room."""
        if self.present:
            return True
        try:
            if self.path.stat().st_size == self.size:
                self.present = True
                return True
        except OSError:
            pass
        partial = self.path.with_name(self.path.name + ".partial")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _allocate(fd, self.size)
            finally:
                os.close(fd)
            os.replace(partial, self.path)
        except OSError as exc:
            self.error = exc
            try:
                os.unlink(partial)
            except OSError:
                pass
            return False
        self.error = None
        self.present = True
        return True

    def release(self) -> bool:
        """Delete the reserve so its space can be used; False when it was not there."""
        self.present = False
        try:
            os.unlink(self.path)
        except OSError:
            return False
        return True


class StoreHealth:
    """Whether the store takes writes; the current problem while it does not."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problem: StoreUnavailable | None = None
        self.since: float | None = None
        self.outages = 0
        self.changed = anyio.Event()

    @property
    def available(self) -> bool:
        return self.problem is None

    def unavailable(self, reason: str, detail: str = "") -> StoreUnavailable:
        """Record (or refresh) the problem; the first one of an outage is logged."""
        problem = StoreUnavailable(reason, self.path, free_bytes(self.path), detail)
        first = self.problem is None
        self.problem = problem
        if first:
            self.since = time.time()
            self.outages += 1
            log.error(
                "store_unavailable",
                error=str(problem),
                reason=reason,
                path=str(self.path),
                free_bytes=problem.free,
                detail=detail,
            )
            self._wake()
        return problem

    def failed(self, exc: BaseException) -> StoreUnavailable:
        """The StoreUnavailable for storage error ``exc`` (which must be an outage)."""
        if isinstance(exc, StoreUnavailable):
            return self.unavailable(exc.reason, exc.detail)
        reason = outage_reason(exc) or "I/O error"
        if reason == "I/O error":
            # SQLite reports a failed write as an I/O error; the file system says why.
            reason = _file_system_reason(self.path) or reason
        return self.unavailable(reason, f"{type(exc).__name__}: {exc}")

    def recovered(self) -> None:
        if self.problem is None:
            return
        down = time.time() - (self.since or time.time())
        log.warning("store_available", path=str(self.path), after_seconds=round(down, 3))
        self.problem = None
        self.since = None
        self._wake()

    def describe(self) -> dict[str, Any]:
        """What ``status`` shows: ``{"available": true}`` or the problem and since when."""
        if self.problem is None:
            return {"available": True, "path": str(self.path)}
        return {
            "available": False,
            "message": str(self.problem),
            "since": self.since,
            **self.problem.to_dict(),
        }

    async def wait_changed(self) -> None:
        await self.changed.wait()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


class StoreMonitor:
    """Reports an outage (an alert) and probes the store until it takes writes again.

    ``alert(problem)`` records the ``store.unavailable`` event; ``probe()`` makes one
    small write; ``on_recovered()`` runs once the store is back (the daemon restarts
    the actors that wait for it). Probes start after ``probe_initial`` seconds and
    double up to ``probe_max``.
    """

    def __init__(
        self,
        health: StoreHealth,
        reserve: Reserve,
        *,
        alert: Callable[[StoreUnavailable], Awaitable[None]],
        probe: Callable[[], Awaitable[None]],
        on_change: Callable[[StoreUnavailable | None], None],
        probe_initial: float = 0.5,
        probe_max: float = 10.0,
    ) -> None:
        self.health = health
        self.reserve = reserve
        self.alert = alert
        self.probe = probe
        self.on_change = on_change
        self.probe_initial = probe_initial
        self.probe_max = probe_max

    async def run(self) -> None:
        while True:
            problem = self.health.problem
            if problem is None:
                await self.health.wait_changed()
                continue
            self.on_change(problem)
            await self._report(problem)
            await self.until_writable()
            self.on_change(None)

    async def _report(self, problem: StoreUnavailable) -> None:
        try:
            await self.alert(problem)
        except Exception as exc:  # the log line above stays the report
            log.error("store_alert_failed", error=repr(exc))

    async def until_writable(self) -> None:
        """Probe with a doubling pause until the store takes writes again."""
        delay = self.probe_initial
        while self.health.problem is not None:
            with anyio.move_on_after(delay):
                await self.health.wait_changed()
            if self.health.problem is None:
                return
            ensured = await anyio.to_thread.run_sync(self.reserve.ensure)
            if ensured:
                try:
                    await self.probe()
                except Exception as exc:
                    if not is_outage(exc):
                        log.error("store_probe_failed", error=repr(exc))
                else:
                    self.health.recovered()
                    return
            else:
                error = self.reserve.error
                reason = (outage_reason(error) if error else None) or "disk full"
                self.health.unavailable(reason, f"cannot lay down the space reserve: {error}")
            delay = min(delay * 2, self.probe_max)
