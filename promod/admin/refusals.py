"""How often refusals of read-only commands reach the audit log: once per caller, command, window.

Refusals of mutating commands are all audited. A refused read-only command
(``status`` by a user without a role, say) is audited too, but a loop of them
must not flood the log: the first refusal of ``command`` for one uid opens a
window of ``window`` seconds and is recorded; the others in that window are
only counted. When the window has passed (seen at the next admin request of
anyone, or when the server stops) a summary with the count is recorded::

    limiter = RefusalLimiter(window=60.0)
    if limiter.admit(caller, "status"):
        ...  # record this refusal
    for summary in limiter.expired():
        ...  # record "N more refusals of status", by summary.caller
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from promod.admin.audit import format_ts
from promod.admin.registry import Caller

__all__ = ["READ_REFUSAL_WINDOW", "RefusalLimiter", "Suppressed"]

READ_REFUSAL_WINDOW = 60.0  # seconds


@dataclass
class _Window:
    caller: Caller  # the latest refused caller (same uid; pid may differ)
    opened: float  # on the limiter's clock
    opened_at: str  # wall time, for the summary's text
    suppressed: int = 0


@dataclass(frozen=True)
class Suppressed:
    """Refusals of ``command`` for ``caller.uid`` counted but not recorded one by one."""

    caller: Caller
    command: str
    count: int
    since: str
    window: float

    def message(self) -> str:
        many = "refusal" if self.count == 1 else "refusals"
        return (
            f"{self.count} more {many} of {self.command} for uid {self.caller.uid} since"
            f" {self.since} not recorded one by one (one record per {self.window:g}s)"
        )


class RefusalLimiter:
    """One window per (uid, command); monotonic time unless a clock is given."""

    def __init__(
        self, window: float = READ_REFUSAL_WINDOW, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self.clock = clock
        self._windows: dict[tuple[int, str], _Window] = {}
        self._closed: list[Suppressed] = []

    def admit(self, caller: Caller, command: str) -> bool:
        """True if this refusal is to be recorded; False if it is only counted."""
        now = self.clock()
        key = (caller.uid, command)
        current = self._windows.get(key)
        if current is not None and now - current.opened < self.window:
            current.suppressed += 1
            current.caller = caller
            return False
        if current is not None:
            self._close(key, current)
        self._windows[key] = _Window(caller, now, format_ts(dt.datetime.now(dt.UTC)))
        return True

    def expired(self, *, everything: bool = False) -> list[Suppressed]:
        """Close every window that has passed (all of them with ``everything``); their counts."""
        now = self.clock()
        for key, current in list(self._windows.items()):
            if everything or now - current.opened >= self.window:
                self._close(key, current)
        out, self._closed = self._closed, []
        return out

    def _close(self, key: tuple[int, str], current: _Window) -> None:
        del self._windows[key]
        if current.suppressed:
            self._closed.append(
                Suppressed(
                    current.caller, key[1], current.suppressed, current.opened_at, self.window
                )
            )
