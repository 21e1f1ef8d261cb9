"""Descriptor limits: how many connections promod takes, so it never runs out of files.

At start the soft ``RLIMIT_NOFILE`` is raised to the hard limit; the descriptors are
then shared out: a reserve for the store, outgoing mail and webhooks, plugins and the
log; a fixed number of admin connections (so an operator can always reach the kill
switch); and the rest, up to ``[http] max_connections``, for HTTP connections. A
connection beyond its share is closed at once instead of taking a descriptor the
others need::

    soft, hard = raise_nofile()
    budget = DescriptorBudget.for_limit(soft, http_max=1000)
    budget.http_connections     # e.g. 776 of 1,024
    budget.accept_backlog       # connections one accept round may take at a time

The accept-error log line (``socket.accept() out of system resource``), should the
table fill anyway, is let through once per ``AcceptErrorFilter.interval`` seconds,
with the count of the ones held back.
"""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass

from promod.logs import get_logger

__all__ = [
    "ADMIN_CONNECTIONS",
    "AcceptErrorFilter",
    "DescriptorBudget",
    "install_accept_error_filter",
    "raise_nofile",
]

log = get_logger("promod.limits")

ADMIN_CONNECTIONS = 16  # concurrent admin socket connections
MIN_RESERVE = 96  # descriptors kept for the store, SMTP, webhooks, plugins, the log
MIN_HTTP = 8
SOFT_CAP = 1 << 20  # never ask for more than this, even when the hard limit is unlimited


def raise_nofile() -> tuple[int, int]:
    """Raise the soft descriptor limit to the hard one; the (soft, hard) now in force.

    Where raising is not allowed (a seccomp filter, say) the limits stay as they are.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = SOFT_CAP if hard == resource.RLIM_INFINITY else min(hard, SOFT_CAP)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            log.warning("nofile_not_raised", soft=soft, hard=hard, error=str(exc))
        else:
            soft = target
    if soft == resource.RLIM_INFINITY:
        soft = SOFT_CAP
    return soft, hard


@dataclass(frozen=True)
class DescriptorBudget:
    """How the descriptors under ``nofile`` are shared out."""

    nofile: int  # the soft limit in force
    reserve: int  # kept for the store, outgoing connections, plugins, the log
    admin_connections: int  # concurrent admin socket connections
    http_connections: int  # concurrent HTTP connections (uvicorn's limit_concurrency too)
    accept_backlog: int  # connections accepted per round before any is handled

    @classmethod
    def for_limit(cls, nofile: int, *, http_max: int) -> DescriptorBudget:
        reserve = max(MIN_RESERVE, nofile // 4)
        backlog = max(8, min(128, reserve // 6))
        http = nofile - reserve - ADMIN_CONNECTIONS - backlog
        return cls(
            nofile=nofile,
            reserve=reserve,
            admin_connections=ADMIN_CONNECTIONS,
            http_connections=max(MIN_HTTP, min(http_max, http)),
            accept_backlog=backlog,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "nofile": self.nofile,
            "reserve": self.reserve,
            "admin_connections": self.admin_connections,
            "http_connections": self.http_connections,
            "accept_backlog": self.accept_backlog,
        }


class AcceptErrorFilter(logging.Filter):
    """Lets one ``accept() out of system resource`` record through per ``interval``."""

    MARKER = "out of system resource"

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self.interval = interval
        self.suppressed = 0
        self._last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.MARKER not in record.getMessage():
            return True
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            self.suppressed += 1
            return False
        self._last = now
        if self.suppressed:
            record.msg = f"{record.getMessage()} ({self.suppressed} more since the last report)"
            record.args = ()
            self.suppressed = 0
        record.exc_info = None  # the same EMFILE traceback every time says nothing new
        return True


def install_accept_error_filter(interval: float = 10.0) -> AcceptErrorFilter:
    """Rate-limit asyncio's accept-error records (they come once per failed accept)."""
    logger = logging.getLogger("asyncio")
    for existing in logger.filters:
        if isinstance(existing, AcceptErrorFilter):
            return existing
    flt = AcceptErrorFilter(interval)
    logger.addFilter(flt)
    return flt
