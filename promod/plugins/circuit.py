"""Circuit breakers: stop calling a plugin that keeps failing, probe it again later.

One breaker guards one provider, channel or CRM connector. It is *closed*
(calls go through) until ``threshold`` consecutive failures happen within
``window`` seconds; then it is *open* (calls are refused at once) for
``cooldown`` seconds; then *half-open*: exactly one probe call goes through. A
probe that succeeds closes the circuit, one that fails opens it again for
another cool-down. The clock is injectable, so tests never sleep::

    breaker = CircuitBreaker("provider:partner_voucher", threshold=5, window=60, cooldown=30)
    if not breaker.allow():
        raise CircuitOpen(breaker.name, breaker.retry_in())
    try:
        reward = await provider.issue(grant)
    except TemporaryFailure as exc:
        breaker.record_failure(exc)
        raise
    breaker.record_success()

or, the same in one call: ``reward = await breaker.call(provider.issue, grant)``.
``on_change(breaker, old, new)`` runs on every state change (pause the campaigns,
send an alert); ``snapshot()`` is what ``promodctl plugins`` shows. A breaker
belongs to one event loop and is not thread-safe.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

__all__ = ["CircuitBoard", "CircuitBreaker", "CircuitOpen", "CircuitState", "Failure"]

P = ParamSpec("P")
T = TypeVar("T")


class CircuitState(StrEnum):
    CLOSED = "closed"  # calls go through
    OPEN = "open"  # calls are refused until the cool-down is over
    HALF_OPEN = "half_open"  # one probe call is allowed through


class CircuitOpen(Exception):
    """A call refused because the circuit is open (or a probe is already in flight)."""

    def __init__(self, name: str, retry_in: float | None) -> None:
        when = f"; next probe in {retry_in:.1f}s" if retry_in is not None else ""
        super().__init__(f"circuit {name} is open{when}")
        self.name = name
        self.retry_in = retry_in


@dataclass(frozen=True)
class Failure:
    """One recorded failure: when (clock time) and what (an exception's repr or a text)."""

    at: float
    error: str


StateListener = Callable[["CircuitBreaker", CircuitState, CircuitState], None]


class CircuitBreaker:
    """closed → open after ``threshold`` failures in a row within ``window`` s → half-open
    after ``cooldown`` s → closed on a successful probe, open again on a failed one."""

    def __init__(
        self,
        name: str,
        *,
        threshold: int = 5,
        window: float = 60.0,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        history: int = 10,
        counts: Callable[[BaseException], bool] | None = None,
        on_change: StateListener | None = None,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        if window <= 0 or cooldown <= 0:
            raise ValueError("window and cooldown must be positive")
        self.name = name
        self.threshold = threshold  # failures in a row that open the circuit
        self.window = window  # ... all of them within this many seconds
        self.cooldown = cooldown  # seconds open before a probe is let through
        self.clock = clock
        self.counts = counts  # which exceptions are failures (call()); None: every Exception
        self.on_change = on_change
        self._state = CircuitState.CLOSED
        self._streak: deque[float] = deque()  # times of the current run of failures
        self._recent: deque[Failure] = deque(maxlen=history)
        self._opened_at: float | None = None
        self._probe_started: float | None = None
        self.opened = 0  # how many times the circuit has opened
        self.last_success: float | None = None

    # -- state ------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state; an open circuit whose cool-down is over reads half-open."""
        if self._state is CircuitState.OPEN and self._cooldown_over():
            self._set(CircuitState.HALF_OPEN)
        return self._state

    @property
    def consecutive_failures(self) -> int:
        self._forget_old()
        return len(self._streak)

    @property
    def recent_failures(self) -> list[Failure]:
        """The last ``history`` failures, oldest first (kept across state changes)."""
        return list(self._recent)

    def retry_in(self) -> float | None:
        """Seconds until a probe will be allowed; 0 when allowed now; None when closed."""
        state = self.state
        if state is CircuitState.CLOSED:
            return None
        if state is CircuitState.OPEN:
            assert self._opened_at is not None
            return max(0.0, self._opened_at + self.cooldown - self.clock())
        if self._probe_started is None:
            return 0.0
        # A probe in flight; if it never reports back, another is allowed after a cool-down.
        return max(0.0, self._probe_started + self.cooldown - self.clock())

    # -- the protocol -----------------------------------------------------------

    def allow(self) -> bool:
        """May a call go through now? In half-open state this claims the single probe."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.OPEN:
            return False
        now = self.clock()
        if self._probe_started is not None and now - self._probe_started < self.cooldown:
            return False
        self._probe_started = now
        return True

    def record_success(self) -> None:
        self.last_success = self.clock()
        self._streak.clear()
        self._probe_started = None
        if self._state is not CircuitState.CLOSED:
            self._opened_at = None
            self._set(CircuitState.CLOSED)

    def record_failure(self, error: BaseException | str = "failure") -> None:
        now = self.clock()
        text = error if isinstance(error, str) else _describe(error)
        self._recent.append(Failure(now, text))
        if self.state is CircuitState.HALF_OPEN:
            self._probe_started = None
            self._open(now)
            return
        if self._state is CircuitState.OPEN:
            return  # a call that was let through before the circuit opened
        self._streak.append(now)
        self._forget_old(now)
        if len(self._streak) >= self.threshold:
            self._open(now)

    def release_probe(self) -> None:
        """Give the probe back without an outcome (the caller was cancelled)."""
        self._probe_started = None

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(...)`` if allowed (else raise CircuitOpen), recording the outcome.

        An exception for which ``counts`` returns False (say, a permanent refusal of
        one grant) counts as a success of the remote side and is re-raised.
        """
        if not self.allow():
            raise CircuitOpen(self.name, self.retry_in())
        recorded = False
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            recorded = True
            if self.counts is None or self.counts(exc):
                self.record_failure(exc)
            else:
                self.record_success()
            raise
        else:
            recorded = True
            self.record_success()
            return result
        finally:
            if not recorded:  # cancelled or BaseException: no verdict on the plugin
                self.release_probe()

    def reset(self) -> None:
        """Close the circuit by hand (an operator says the partner is fine again)."""
        self._streak.clear()
        self._probe_started = None
        self._opened_at = None
        if self._state is not CircuitState.CLOSED:
            self._set(CircuitState.CLOSED)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready health: state, failures in a row, recent failures, next probe."""
        state = self.state
        return {
            "name": self.name,
            "state": state.value,
            "consecutive_failures": self.consecutive_failures,
            "threshold": self.threshold,
            "opened": self.opened,
            "retry_in": self.retry_in(),
            "last_success": self.last_success,
            "recent_failures": [{"at": f.at, "error": f.error} for f in self._recent],
        }

    # -- internals --------------------------------------------------------------

    def _cooldown_over(self) -> bool:
        return self._opened_at is not None and self.clock() - self._opened_at >= self.cooldown

    def _forget_old(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        while self._streak and now - self._streak[0] > self.window:
            self._streak.popleft()

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._streak.clear()
        self.opened += 1
        self._set(CircuitState.OPEN)

    def _set(self, new: CircuitState) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        if self.on_change is not None:
            self.on_change(self, old, new)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class CircuitBoard:
    """The breakers of a daemon by name (``provider:X``, ``channel:Y``, ``crm:Z``).

    ``board.get("provider:partner_voucher")`` makes the breaker on first use with the
    board's defaults; ``board.snapshot()`` lists them all for ``promodctl plugins``.
    """

    def __init__(
        self,
        *,
        threshold: int = 5,
        window: float = 60.0,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: StateListener | None = None,
    ) -> None:
        self._defaults: dict[str, Any] = {
            "threshold": threshold,
            "window": window,
            "cooldown": cooldown,
            "clock": clock,
            "on_change": on_change,
        }
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str, **overrides: Any) -> CircuitBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker(name, **{**self._defaults, **overrides})
            self._breakers[name] = breaker
        return breaker

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(list(self._breakers.values()))

    def snapshot(self) -> list[dict[str, Any]]:
        return [b.snapshot() for b in self._breakers.values()]
