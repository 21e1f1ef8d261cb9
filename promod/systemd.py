"""systemd service notifications (sd_notify) without dependencies.

Owns the conversation with the service manager of a ``Type=notify`` unit:
``READY=1`` once serving, ``WATCHDOG=1`` pings while healthy, ``RELOADING=1`` and
``STOPPING=1`` around reloads and shutdown, ``STATUS=`` lines for ``systemctl
status``, and ``EXTEND_TIMEOUT_USEC=`` for a slow start or drain. The address
comes from ``$NOTIFY_SOCKET`` (an absolute path or an abstract ``@name``); when it
is absent every call is a cheap no-op, so the daemon runs the same in a terminal.
:meth:`Notifier.from_env` removes ``NOTIFY_SOCKET`` (and the watchdog variables)
from ``os.environ`` so that child processes do not inherit them.

    notifier = Notifier.from_env()
    notifier.ready(status="serving")
    period = notifier.watchdog_period()      # seconds, or None without a watchdog
    while healthy:
        notifier.watchdog_ping()
        await anyio.sleep(period / 2)
    notifier.stopping()
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import MutableMapping
from types import TracebackType

__all__ = ["Notifier"]

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


def _socket_address(address: str) -> str:
    """The ``sendto`` address for a ``$NOTIFY_SOCKET`` value; ValueError if unsupported."""
    if len(address) > 1 and address[0] == "/":
        return address
    if len(address) > 1 and address[0] == "@":
        return "\0" + address[1:]
    raise ValueError(f"unsupported notification socket address {address!r}")


def _watchdog_usec(environ: MutableMapping[str, str], pid: int) -> int | None:
    """WATCHDOG_USEC when it is meant for process ``pid``, else None (sd_watchdog_enabled)."""
    raw = environ.get(WATCHDOG_USEC)
    if raw is None:
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    raw_pid = environ.get(WATCHDOG_PID)
    if raw_pid is not None:
        try:
            if int(raw_pid) != pid:
                return None
        except ValueError:
            return None
    return usec


def _usec(seconds: float) -> int:
    if seconds < 0:
        raise ValueError("seconds must not be negative")
    return int(seconds * 1_000_000)


class Notifier:
    """A client of the service manager's notification socket.

    ``Notifier(None)`` is disabled: every method returns without sending. Sending
    never raises; :meth:`notify` returns False when the datagram could not be
    delivered (the manager gone, the socket full), which a daemon can log and
    otherwise ignore.
    """

    def __init__(self, address: str | None = None, *, watchdog_usec: int | None = None) -> None:
        self.address = address
        self._target: str | None = None
        self._sock: socket.socket | None = None
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        if address:
            self._target = _socket_address(address)
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Build from ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``.

        The three variables are removed from ``environ`` (default ``os.environ``)
        so that subprocesses do not talk to systemd on the daemon's behalf. An
        address this client cannot use (not ``/path`` or ``@name``) gives a
        disabled notifier whose :attr:`address` still shows it.
        """
        env = os.environ if environ is None else environ
        address = env.pop(NOTIFY_SOCKET, None)
        watchdog = _watchdog_usec(env, os.getpid())
        env.pop(WATCHDOG_USEC, None)
        env.pop(WATCHDOG_PID, None)
        try:
            return cls(address, watchdog_usec=watchdog)
        except ValueError:
            notifier = cls(None, watchdog_usec=watchdog)
            notifier.address = address
            return notifier

    @property
    def enabled(self) -> bool:
        """True when notifications go to a socket."""
        return self._sock is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram; True if it was sent."""
        if self._sock is None or self._target is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8")
        try:
            self._sock.sendto(payload, self._target)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete and the daemon is serving."""
        if status is None:
            return self.notify("READY=1")
        return self.notify("READY=1", _status(status))

    def reloading(self) -> bool:
        """A configuration reload began; call :meth:`ready` when it is done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown began (draining in-flight work)."""
        if status is None:
            return self.notify("STOPPING=1")
        return self.notify("STOPPING=1", _status(status))

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status``."""
        return self.notify(_status(text))

    def watchdog_ping(self) -> bool:
        """Tell the watchdog the daemon is healthy; send only while it is."""
        return self.notify("WATCHDOG=1")

    def watchdog_trigger(self) -> bool:
        """Ask systemd to act as if the watchdog expired (the unit's failure path)."""
        return self.notify("WATCHDOG=trigger")

    def watchdog_period(self) -> float | None:
        """Seconds within which systemd expects a ping, or None without a watchdog.

        Ping at least twice per period, e.g. every ``period / 2`` seconds.
        """
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 1_000_000

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for ``seconds`` more before the start, reload or stop timeout fires."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={_usec(seconds)}")

    def main_pid(self, pid: int | None = None) -> bool:
        """Report the service's main PID (default: this process)."""
        return self.notify(f"MAINPID={os.getpid() if pid is None else pid}")

    def close(self) -> None:
        """Close the socket; later calls are no-ops."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"Notifier({self.address!r}, {state}, watchdog={self.watchdog_period()!r})"


def _status(text: str) -> str:
    """A STATUS= assignment; newlines would start a new assignment, so they become spaces."""
    return "STATUS=" + " ".join(text.splitlines())
