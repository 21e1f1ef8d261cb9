"""CircuitBreaker: closed → open → half-open → closed/open, on an injected clock."""

from __future__ import annotations

import anyio
import pytest

from promod.plugins.circuit import CircuitBoard, CircuitBreaker, CircuitOpen, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(clock: Clock, **kw) -> tuple[CircuitBreaker, list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []
    options = {"threshold": 3, "window": 10.0, "cooldown": 5.0, **kw}
    breaker = CircuitBreaker(
        "provider:p",
        clock=clock,
        on_change=lambda b, old, new: changes.append((old.value, new.value)),
        **options,
    )
    return breaker, changes


def test_opens_after_threshold_consecutive_failures() -> None:
    clock = Clock()
    b, changes = make(clock)
    for _ in range(2):
        assert b.allow()
        b.record_failure(RuntimeError("boom"))
    assert b.state is CircuitState.CLOSED
    assert b.consecutive_failures == 2
    b.record_failure("down")
    assert b.state is CircuitState.OPEN
    assert not b.allow()
    assert changes == [("closed", "open")]
    assert b.opened == 1
    assert b.retry_in() == 5.0


def test_a_success_breaks_the_streak() -> None:
    clock = Clock()
    b, _ = make(clock)
    b.record_failure()
    b.record_failure()
    b.record_success()
    b.record_failure()
    b.record_failure()
    assert b.state is CircuitState.CLOSED
    assert b.consecutive_failures == 2


def test_failures_outside_the_window_do_not_count() -> None:
    clock = Clock()
    b, _ = make(clock)
    b.record_failure()
    clock.advance(6)
    b.record_failure()
    clock.advance(6)  # the first one is now 12 s old
    b.record_failure()
    assert b.state is CircuitState.CLOSED
    assert b.consecutive_failures == 2
    clock.advance(11)
    assert b.consecutive_failures == 0


def test_half_open_allows_one_probe_and_success_closes() -> None:
    clock = Clock()
    b, changes = make(clock)
    for _ in range(3):
        b.record_failure()
    clock.advance(4.9)
    assert not b.allow()
    clock.advance(0.1)
    assert b.state is CircuitState.HALF_OPEN
    assert b.retry_in() == 0.0
    assert b.allow()  # the probe
    assert not b.allow()  # only one at a time
    b.record_success()
    assert b.state is CircuitState.CLOSED
    assert b.allow()
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert b.last_success == clock.now


def test_failed_probe_opens_again_for_another_cooldown() -> None:
    clock = Clock()
    b, changes = make(clock)
    for _ in range(3):
        b.record_failure()
    clock.advance(5)
    assert b.allow()
    b.record_failure(TimeoutError())
    assert b.state is CircuitState.OPEN
    assert b.opened == 2
    clock.advance(4)
    assert not b.allow()
    clock.advance(1)
    assert b.allow()
    assert changes[-2:] == [("half_open", "open"), ("open", "half_open")]


def test_a_probe_that_never_reports_is_replaced_after_a_cooldown() -> None:
    clock = Clock()
    b, _ = make(clock)
    for _ in range(3):
        b.record_failure()
    clock.advance(5)
    assert b.allow()
    clock.advance(4)
    assert not b.allow()
    assert b.retry_in() == 1.0
    clock.advance(1)
    assert b.allow()


def test_snapshot_exposes_state_and_recent_failures() -> None:
    clock = Clock()
    b, _ = make(clock, history=2)
    b.record_failure(ValueError("bad answer"))
    b.record_failure(RuntimeError())
    b.record_failure("partner down")
    snap = b.snapshot()
    assert snap["name"] == "provider:p"
    assert snap["state"] == "open"
    assert snap["consecutive_failures"] == 0
    assert snap["opened"] == 1
    assert snap["retry_in"] == 5.0
    assert snap["recent_failures"] == [
        {"at": 1000.0, "error": "RuntimeError"},
        {"at": 1000.0, "error": "partner down"},
    ]
    b.reset()
    assert b.snapshot()["state"] == "closed"
    assert b.snapshot()["retry_in"] is None


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("x", threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker("x", cooldown=0)


@pytest.mark.anyio
async def test_call_records_outcomes_and_refuses_when_open() -> None:
    clock = Clock()

    class Rejected(Exception):
        pass

    b, _ = make(clock, counts=lambda exc: not isinstance(exc, Rejected))

    async def ok(x: int) -> int:
        return x * 2

    async def fail() -> None:
        raise RuntimeError("down")

    async def reject() -> None:
        raise Rejected()

    assert await b.call(ok, 21) == 42
    for _ in range(2):
        with pytest.raises(RuntimeError):
            await b.call(fail)
    with pytest.raises(Rejected):  # the partner answered: not a failure, ends the streak
        await b.call(reject)
    assert b.consecutive_failures == 0
    for _ in range(3):
        with pytest.raises(RuntimeError):
            await b.call(fail)
    with pytest.raises(CircuitOpen) as info:
        await b.call(ok, 1)
    assert info.value.retry_in == 5.0
    assert "provider:p" in str(info.value)


@pytest.mark.anyio
async def test_cancelled_probe_is_given_back() -> None:
    clock = Clock()
    b, _ = make(clock)
    for _ in range(3):
        b.record_failure()
    clock.advance(5)

    async def hang() -> None:
        await anyio.sleep_forever()

    with anyio.move_on_after(0.01):
        await b.call(hang)
    assert b.state is CircuitState.HALF_OPEN
    assert b.allow()  # the probe slot is free again


def test_board_makes_breakers_on_first_use() -> None:
    clock = Clock()
    board = CircuitBoard(threshold=1, cooldown=2, clock=clock)
    a = board.get("provider:a")
    assert board.get("provider:a") is a
    assert "provider:a" in board and "provider:b" not in board
    board.get("channel:mail", threshold=4).record_failure()
    a.record_failure()
    states = {s["name"]: s["state"] for s in board.snapshot()}
    assert states == {"provider:a": "open", "channel:mail": "closed"}
    assert [b.name for b in board] == ["provider:a", "channel:mail"]
