"""Supervisor behaviour: OTP strategies, restart types, intensity, backoff, ordered start/stop."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus

from promod.actors.base import Actor, UnknownMessage
from promod.actors.supervisor import (
    ChildSpec,
    ChildStartFailed,
    Restart,
    Service,
    Strategy,
    Supervisor,
    SupervisorGaveUp,
)
from promod.testing import wait_until_async

pytestmark = pytest.mark.anyio


class Journal:
    """What the children did, in order, plus the supervisor's events."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def add(self, entry: str) -> None:
        self.entries.append(entry)

    def on_event(self, kind: str, info: dict[str, Any]) -> None:
        self.events.append((kind, info))

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [info for k, info in self.events if k == kind]

    def since(self, mark: int) -> list[str]:
        return self.entries[mark:]


class Worker(Actor):
    def __init__(self, journal: Journal, start_delay: float = 0.0) -> None:
        super().__init__()
        self.journal = journal
        self.start_delay = start_delay

    async def on_start(self) -> None:
        self.journal.add(f"begin:{self.name}")
        await anyio.sleep(self.start_delay)
        self.journal.add(f"start:{self.name}")

    async def on_stop(self) -> None:
        self.journal.add(f"stop:{self.name}")

    async def receive(self, message: object) -> object:
        match message:
            case "ping":
                return self.name
            case "crash":
                raise RuntimeError(f"{self.name} crashed")
            case "exit":
                self.request_stop()
                return None
            case "block":
                await anyio.sleep_forever()
        raise UnknownMessage(self, message)


class Job:
    """A Service: starts, then returns, raises, or runs until cancelled."""

    def __init__(self, journal: Journal, name: str, behaviour: str = "forever") -> None:
        self.journal = journal
        self.name = name
        self.behaviour = behaviour

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.journal.add(f"start:{self.name}")
        if self.behaviour == "fail_start":
            raise RuntimeError("cannot start")
        task_status.started()
        if self.behaviour == "return":
            self.journal.add(f"return:{self.name}")
            return
        if self.behaviour == "raise":
            raise RuntimeError("job failed")
        try:
            await anyio.sleep_forever()
        finally:
            self.journal.add(f"cancelled:{self.name}")


def workers(journal: Journal, *names: str, **kwargs: Any) -> list[ChildSpec]:
    return [ChildSpec(name, lambda: Worker(journal), **kwargs) for name in names]


def make_supervisor(journal: Journal, children: list[ChildSpec], **kwargs: Any) -> Supervisor:
    kwargs.setdefault("backoff_initial", 0.001)
    kwargs.setdefault("backoff_max", 0.001)
    return Supervisor(children, on_event=journal.on_event, **kwargs)


def worker(supervisor: Supervisor, name: str) -> Worker:
    child = supervisor.child(name)
    assert isinstance(child, Worker)
    return child


async def test_children_start_in_order_and_stop_in_reverse() -> None:
    journal = Journal()
    children = [ChildSpec(n, lambda: Worker(journal, start_delay=0.005)) for n in "abc"]
    supervisor = make_supervisor(journal, children)
    assert not supervisor.healthy
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        assert supervisor.healthy
        assert journal.entries == [
            "begin:a", "start:a", "begin:b", "start:b", "begin:c", "start:c",
        ]  # fmt: skip
        assert [info["state"] for info in supervisor.children_info()] == ["running"] * 3
        await supervisor.stop()
    assert journal.since(6) == ["stop:c", "stop:b", "stop:a"]
    assert supervisor.state == "stopped"
    assert not supervisor.healthy
    assert [info["state"] for info in supervisor.children_info()] == ["stopped"] * 3


async def test_one_for_one_restarts_only_the_child_whose_tell_crashed() -> None:
    journal = Journal()
    supervisor = make_supervisor(journal, workers(journal, "a", "b", "c"))
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        a, b, c = (worker(supervisor, n) for n in "abc")
        mark = len(journal.entries)
        b.tell("crash")
        await wait_until_async(lambda: len(journal.kinds("child_restarted")) == 1)
        assert journal.since(mark) == ["stop:b", "begin:b", "start:b"]
        assert worker(supervisor, "a") is a and worker(supervisor, "c") is c
        new_b = worker(supervisor, "b")
        assert new_b is not b and new_b.state == "running"
        assert b.state == "failed"
        assert await new_b.ask("ping") == "b"
        info = {i["name"]: i for i in supervisor.children_info()}
        assert info["b"]["restarts"] == 1 and info["a"]["restarts"] == 0
        assert info["b"]["last_error"] == "RuntimeError: b crashed"
        event = journal.kinds("child_restarted")[0]
        assert event["child"] == "b" and event["restarted"] == ["b"]
        assert event["error"] == "RuntimeError: b crashed"
        assert supervisor.healthy
        await supervisor.stop()


async def test_ask_exception_goes_to_the_caller_without_a_restart() -> None:
    journal = Journal()
    supervisor = make_supervisor(journal, workers(journal, "a"))
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        a = worker(supervisor, "a")
        with pytest.raises(RuntimeError, match="a crashed"):
            await a.ask("crash")
        with pytest.raises(UnknownMessage):
            await a.ask("no such message")
        assert await a.ask("ping") == "a"
        assert worker(supervisor, "a") is a
        assert supervisor.children_info()[0]["restarts"] == 0
        await supervisor.stop()
    assert journal.events == []


async def test_one_for_all_restarts_every_child_stopping_in_reverse() -> None:
    journal = Journal()
    supervisor = make_supervisor(
        journal, workers(journal, "a", "b", "c"), strategy=Strategy.ONE_FOR_ALL
    )
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        old = [worker(supervisor, n) for n in "abc"]
        mark = len(journal.entries)
        old[1].tell("crash")
        await wait_until_async(lambda: len(journal.kinds("child_restarted")) == 1)
        assert [e for e in journal.since(mark) if not e.startswith("begin")] == [
            "stop:b", "stop:c", "stop:a", "start:a", "start:b", "start:c",
        ]  # fmt: skip
        assert all(worker(supervisor, n) is not o for n, o in zip("abc", old, strict=True))
        assert [i["restarts"] for i in supervisor.children_info()] == [1, 1, 1]
        assert journal.kinds("child_restarted")[0]["restarted"] == ["a", "b", "c"]
        await supervisor.stop()


async def test_rest_for_one_restarts_the_child_and_those_started_after_it() -> None:
    journal = Journal()
    supervisor = make_supervisor(
        journal, workers(journal, "a", "b", "c"), strategy=Strategy.REST_FOR_ONE
    )
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        a = worker(supervisor, "a")
        mark = len(journal.entries)
        worker(supervisor, "b").tell("crash")
        await wait_until_async(lambda: len(journal.kinds("child_restarted")) == 1)
        assert [e for e in journal.since(mark) if not e.startswith("begin")] == [
            "stop:b", "stop:c", "start:b", "start:c",
        ]  # fmt: skip
        assert worker(supervisor, "a") is a
        assert [i["restarts"] for i in supervisor.children_info()] == [0, 1, 1]
        await supervisor.stop()


async def test_temporary_sibling_is_stopped_but_not_restarted_with_its_group() -> None:
    journal = Journal()
    children = [
        *workers(journal, "a"),
        ChildSpec("t", lambda: Job(journal, "t"), restart=Restart.TEMPORARY),
        *workers(journal, "c"),
    ]
    supervisor = make_supervisor(journal, children, strategy=Strategy.ONE_FOR_ALL)
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        mark = len(journal.entries)
        worker(supervisor, "a").tell("crash")
        await wait_until_async(lambda: len(journal.kinds("child_restarted")) == 1)
        assert [e for e in journal.since(mark) if not e.startswith("begin")] == [
            "stop:a", "stop:c", "cancelled:t", "start:a", "start:c",
        ]  # fmt: skip
        states = {i["name"]: i["state"] for i in supervisor.children_info()}
        assert states == {"a": "running", "t": "stopped", "c": "running"}
        assert supervisor.healthy
        await supervisor.stop()


@pytest.mark.parametrize(
    ("restart", "behaviour", "restarted", "final_state"),
    [
        (Restart.PERMANENT, "return", True, "running"),
        (Restart.PERMANENT, "raise", True, "running"),
        (Restart.TRANSIENT, "return", False, "stopped"),
        (Restart.TRANSIENT, "raise", True, "running"),
        (Restart.TEMPORARY, "return", False, "stopped"),
        (Restart.TEMPORARY, "raise", False, "failed"),
    ],
)
async def test_restart_type_decides_whether_an_exited_child_comes_back(
    restart: Restart, behaviour: str, restarted: bool, final_state: str
) -> None:
    journal = Journal()
    runs: list[Job] = []

    def factory() -> Service:
        job = Job(journal, "job", behaviour if not runs else "forever")
        runs.append(job)
        return job

    supervisor = make_supervisor(journal, [ChildSpec("job", factory, restart=restart)])
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        if restarted:
            await wait_until_async(lambda: len(journal.kinds("child_restarted")) == 1)
        else:
            # The state is final before the exit reaches the supervisor's loop, which
            # restarts only a child in state "restarting".
            await wait_until_async(lambda: supervisor.children_info()[0]["state"] == final_state)
        info = supervisor.children_info()[0]
        assert info["state"] == final_state
        assert info["restart_type"] == restart.value
        assert len(runs) == (2 if restarted else 1)
        assert supervisor.child("job") is runs[-1]
        if behaviour == "raise":
            assert info["last_error"] == "RuntimeError: job failed"
        assert supervisor.healthy
        await supervisor.stop()


async def test_actor_that_stops_itself_is_restarted_when_permanent() -> None:
    journal = Journal()
    supervisor = make_supervisor(journal, workers(journal, "a"))
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        first = worker(supervisor, "a")
        await first.ask("exit")
        await wait_until_async(lambda: len(journal.kinds("child_restarted")) == 1)
        assert first.state == "stopped"
        assert worker(supervisor, "a") is not first
        assert supervisor.children_info()[0]["last_error"] is None
        await supervisor.stop()


async def test_more_restarts_than_intensity_allows_gives_up_stopping_children_in_reverse() -> None:
    journal = Journal()
    children = [
        *workers(journal, "a"),
        ChildSpec("flaky", lambda: Job(journal, "flaky", "raise")),
        *workers(journal, "c"),
    ]
    supervisor = make_supervisor(journal, children, max_restarts=3, restart_window=10.0)
    with pytest.raises(SupervisorGaveUp, match="restarts exceeded 3") as caught:
        await supervisor.run()
    assert caught.value.child == "flaky"
    assert caught.value.last_error == "RuntimeError: job failed"
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert journal.entries.count("start:flaky") == 4
    assert journal.entries[-2:] == ["stop:c", "stop:a"]
    assert len(journal.kinds("child_restarted")) == 3
    assert journal.kinds("gave_up") == [
        {
            "child": "flaky",
            "error": "RuntimeError: job failed",
            "max_restarts": 3,
            "restart_window": 10.0,
        }
    ]
    assert supervisor.state == "gave_up"
    assert not supervisor.healthy
    states = [i["state"] for i in supervisor.children_info()]
    assert states == ["stopped", "failed", "stopped"]


async def test_restarts_older_than_the_window_do_not_count() -> None:
    journal = Journal()
    supervisor = make_supervisor(
        journal, workers(journal, "a"), max_restarts=1, restart_window=0.05
    )
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        for expected in (1, 2, 3):
            worker(supervisor, "a").tell("crash")

            def restarted(n: int = expected) -> bool:
                return len(journal.kinds("child_restarted")) == n

            await wait_until_async(restarted)
            await anyio.sleep(0.06)
        assert supervisor.healthy
        assert supervisor.children_info()[0]["restarts"] == 3
        await supervisor.stop()
    assert journal.kinds("gave_up") == []


async def test_backoff_doubles_per_restart_and_is_capped() -> None:
    journal = Journal()
    starts: list[float] = []

    def factory() -> Service:
        starts.append(anyio.current_time())
        return Job(journal, "flaky", "raise")

    supervisor = Supervisor(
        [ChildSpec("flaky", factory)],
        max_restarts=5,
        restart_window=10.0,
        backoff_initial=0.02,
        backoff_max=0.06,
        on_event=journal.on_event,
    )
    with pytest.raises(SupervisorGaveUp):
        await supervisor.run()
    expected = [0.02, 0.04, 0.06, 0.06, 0.06]
    assert [e["delay"] for e in journal.kinds("child_restarted")] == pytest.approx(expected)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(gaps) == len(expected)
    for gap, delay in zip(gaps, expected, strict=True):
        assert delay <= gap < delay + 0.1


async def test_healthy_is_false_while_a_child_waits_for_its_restart() -> None:
    journal = Journal()
    supervisor = make_supervisor(
        journal, workers(journal, "a", "b"), backoff_initial=0.05, backoff_max=0.05
    )
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        assert supervisor.healthy
        worker(supervisor, "b").tell("crash")
        await wait_until_async(lambda: supervisor.children_info()[1]["state"] == "restarting")
        assert not supervisor.healthy
        await wait_until_async(lambda: len(journal.kinds("child_restarted")) == 1)
        assert supervisor.healthy
        await supervisor.stop()


async def test_stop_during_backoff_returns_promptly() -> None:
    journal = Journal()
    supervisor = make_supervisor(
        journal, workers(journal, "a", "b"), backoff_initial=10.0, backoff_max=10.0
    )
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        worker(supervisor, "b").tell("crash")
        await wait_until_async(lambda: supervisor.children_info()[1]["state"] == "restarting")
        with anyio.fail_after(1):
            await supervisor.stop()
    assert journal.entries[-1] == "stop:a"
    assert [i["state"] for i in supervisor.children_info()] == ["stopped", "failed"]
    assert journal.kinds("child_restarted") == []


async def test_initial_start_failure_stops_the_children_already_started() -> None:
    journal = Journal()
    children = [
        *workers(journal, "a"),
        ChildSpec("broken", lambda: Job(journal, "broken", "fail_start")),
        *workers(journal, "c"),
    ]
    supervisor = make_supervisor(journal, children)
    with pytest.raises(ChildStartFailed, match="'broken' failed to start") as caught:
        await supervisor.run()
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert journal.entries == ["begin:a", "start:a", "start:broken", "stop:a"]
    states = [i["state"] for i in supervisor.children_info()]
    assert states == ["stopped", "failed", "new"]


async def test_failed_restarts_count_toward_intensity() -> None:
    journal = Journal()
    made: list[Job] = []

    def factory() -> Service:
        made.append(Job(journal, "db", "raise" if not made else "fail_start"))
        return made[-1]

    supervisor = make_supervisor(journal, [ChildSpec("db", factory)], max_restarts=2)
    with pytest.raises(SupervisorGaveUp) as caught:
        await supervisor.run()
    assert not isinstance(caught.value, ChildStartFailed)
    assert caught.value.last_error == "RuntimeError: cannot start"
    assert len(made) == 3


async def test_stop_bounds_each_child_by_its_shutdown_timeout() -> None:
    journal = Journal()
    children = [
        ChildSpec("svc", lambda: Job(journal, "svc"), shutdown_timeout=0.05),
        ChildSpec("stuck", lambda: Worker(journal), shutdown_timeout=0.05),
    ]
    supervisor = make_supervisor(journal, children)
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        worker(supervisor, "stuck").tell("block")
        await anyio.sleep(0.001)
        began = anyio.current_time()
        await supervisor.stop()
        elapsed = anyio.current_time() - began
    assert 0.05 <= elapsed < 0.5
    assert journal.entries[-2:] == ["stop:stuck", "cancelled:svc"]
    assert [i["state"] for i in supervisor.children_info()] == ["stopped", "stopped"]


async def test_children_info_reports_each_child_with_short_errors() -> None:
    journal = Journal()
    huge = "x" * 10_000

    class Loud(Worker):
        async def receive(self, message: object) -> object:
            raise ValueError(huge)

    children = [
        ChildSpec("loud", lambda: Loud(journal), restart=Restart.TRANSIENT),
        ChildSpec("job", lambda: Job(journal, "job"), restart=Restart.TEMPORARY),
    ]
    supervisor = make_supervisor(journal, children)
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        worker(supervisor, "loud").tell("anything")
        await wait_until_async(lambda: len(journal.kinds("child_restarted")) == 1)
        loud, job = supervisor.children_info()
        assert set(loud) == {
            "name",
            "state",
            "restarts",
            "restart_type",
            "started_at",
            "last_error",
        }
        assert loud["name"] == "loud" and loud["restart_type"] == "transient"
        assert loud["state"] == "running" and loud["restarts"] == 1
        assert loud["last_error"].startswith("ValueError: xxx")
        assert len(loud["last_error"]) <= 200
        assert isinstance(job["started_at"], float) and job["started_at"] > 0
        assert job["restart_type"] == "temporary" and job["last_error"] is None
        await supervisor.stop()


async def test_failing_event_callback_does_not_stop_supervision() -> None:
    journal = Journal()

    def on_event(kind: str, info: dict[str, Any]) -> None:
        journal.on_event(kind, info)
        raise RuntimeError("alerting is down")

    supervisor = Supervisor(workers(journal, "a"), backoff_initial=0.001, on_event=on_event)
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        worker(supervisor, "a").tell("crash")
        await wait_until_async(lambda: len(journal.kinds("child_restarted")) == 1)
        assert supervisor.healthy
        assert await worker(supervisor, "a").ask("ping") == "a"
        await supervisor.stop()


async def test_a_supervisor_that_gives_up_is_a_crashing_child_of_its_parent() -> None:
    journal = Journal()

    def inner() -> Service:
        return Supervisor(
            [ChildSpec("flaky", lambda: Job(journal, "flaky", "raise"))],
            max_restarts=0,
            name="inner",
        )

    outer = make_supervisor(journal, [ChildSpec("inner", inner)], max_restarts=1)
    with pytest.raises(SupervisorGaveUp) as caught:
        await outer.run()
    assert caught.value.child == "inner"
    assert (caught.value.last_error or "").startswith("SupervisorGaveUp: child 'flaky'")
    assert journal.entries.count("start:flaky") == 2


async def test_child_lookup_and_single_use() -> None:
    journal = Journal()
    supervisor = make_supervisor(journal, workers(journal, "a"))
    with pytest.raises(KeyError, match="not been started"):
        supervisor.child("a")
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        with pytest.raises(KeyError, match="no child named"):
            supervisor.child("zzz")
        await supervisor.stop()
    await supervisor.stop()
    with pytest.raises(RuntimeError, match="already run"):
        await supervisor.run()
    with pytest.raises(ValueError, match="duplicate child names: a"):
        Supervisor(workers(journal, "a", "a"))


class DiskFull(Exception):
    """Stands for a store outage in these tests (the daemon passes promod's own check)."""


class OutageProne(Actor):
    """Fails on start while ``blocked`` is set, like an actor whose on_start writes."""

    def __init__(self, journal: Journal, state: dict[str, bool]) -> None:
        super().__init__()
        self.journal = journal
        self.disk = state

    async def on_start(self) -> None:
        self.journal.add(f"try:{self.name}")
        if self.disk["blocked"]:
            raise DiskFull("database or disk is full")

    async def receive(self, message: object) -> object:
        if message == "write" and self.disk["blocked"]:
            raise DiskFull("database or disk is full")
        return "ok"


async def test_an_outage_is_waited_out_without_counting_against_the_restart_limit() -> None:
    journal = Journal()
    state = {"blocked": False}
    supervisor = Supervisor(
        [
            ChildSpec("writer", lambda: OutageProne(journal, state)),
            ChildSpec("other", lambda: Worker(journal)),
        ],
        max_restarts=1,
        restart_window=60.0,
        backoff_initial=0.01,
        on_event=journal.on_event,
        is_outage=lambda exc: isinstance(exc, DiskFull),
        outage_backoff_max=0.05,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        state["blocked"] = True
        supervisor.child("writer").tell("write")  # crashes it on the outage
        await wait_until_async(lambda: journal.entries.count("try:writer") >= 6, timeout=5)
        assert supervisor.state == "running"  # far past max_restarts=1, still supervising
        assert not supervisor.healthy
        assert supervisor.serving
        assert supervisor.children_info()[1]["state"] == "running"
        assert journal.kinds("gave_up") == []
        state["blocked"] = False
        supervisor.retry_now()
        await wait_until_async(
            lambda: supervisor.children_info()[0]["state"] == "running", timeout=5
        )
        assert supervisor.healthy
        await supervisor.stop()
        tg.cancel_scope.cancel()


async def test_a_child_that_cannot_start_on_an_outage_does_not_stop_the_others() -> None:
    journal = Journal()
    state = {"blocked": True}
    supervisor = Supervisor(
        [
            ChildSpec("writer", lambda: OutageProne(journal, state)),
            ChildSpec("admin", lambda: Worker(journal)),
        ],
        backoff_initial=0.01,
        is_outage=lambda exc: isinstance(exc, DiskFull),
        outage_backoff_max=10.0,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)  # no ChildStartFailed
        assert "start:admin" in journal.entries
        await supervisor.child("admin").ask("ping")
        supervisor.set_condition("store", "disk full")
        assert not supervisor.healthy
        state["blocked"] = False
        supervisor.set_condition("store", None)
        supervisor.retry_now()  # at once, not after the backoff
        await wait_until_async(
            lambda: supervisor.children_info()[0]["state"] == "running", timeout=5
        )
        assert supervisor.healthy
        await supervisor.stop()
        tg.cancel_scope.cancel()
