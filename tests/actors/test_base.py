"""Actor behaviour: ask/tell, crashes, mailbox bounds, lifecycle."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskStatus

from promod.actors.base import Actor, ActorNotRunning, Envelope, MailboxFull, UnknownMessage
from promod.testing import wait_until_async

pytestmark = pytest.mark.anyio


class Recorder(Actor):
    name = "recorder"

    def __init__(self, log: list[str] | None = None) -> None:
        super().__init__()
        self.log: list[str] = [] if log is None else log
        self.gate = anyio.Event()
        self.entered = anyio.Event()

    async def on_start(self) -> None:
        self.log.append("start")

    async def on_stop(self) -> None:
        self.log.append("stop")

    async def receive(self, message: object) -> object:
        match message:
            case ("echo", value):
                self.log.append(f"echo:{value}")
                return value
            case "fail":
                raise ValueError("handler failed")
            case ("sleep", float(seconds)):
                await anyio.sleep(seconds)
                return "slept"
            case "wait_gate":
                self.log.append("waiting")
                self.entered.set()
                await self.gate.wait()
                self.log.append("gate passed")
                return "passed"
        raise UnknownMessage(self, message)


async def test_ask_returns_result_and_tells_are_handled_in_order() -> None:
    actor = Recorder()
    async with anyio.create_task_group() as tg:
        await tg.start(actor.run)
        assert actor.state == "running"
        for i in range(3):
            actor.tell(("echo", i))
        assert await actor.ask(("echo", "last")) == "last"
        actor.request_stop()
    assert actor.log == ["start", "echo:0", "echo:1", "echo:2", "echo:last", "stop"]
    assert actor.state == "stopped"


async def test_ask_exception_reaches_caller_and_actor_keeps_running() -> None:
    actor = Recorder()
    async with anyio.create_task_group() as tg:
        await tg.start(actor.run)
        with pytest.raises(ValueError, match="handler failed"):
            await actor.ask("fail")
        with pytest.raises(UnknownMessage, match="cannot handle int"):
            await actor.ask(42)
        assert actor.state == "running"
        assert await actor.ask(("echo", "still here")) == "still here"
        actor.request_stop()


async def test_tell_exception_crashes_the_actor_and_runs_on_stop() -> None:
    actor = Recorder()
    with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match="handler failed")):
        async with anyio.create_task_group() as tg:
            await tg.start(actor.run)
            actor.tell("fail")
    assert actor.state == "failed"
    assert actor.log == ["start", "stop"]
    with pytest.raises(ActorNotRunning):
        actor.tell(("echo", 1))


async def test_unknown_message_told_crashes_the_actor() -> None:
    actor = Actor()
    with pytest.RaisesGroup(UnknownMessage):
        async with anyio.create_task_group() as tg:
            await tg.start(actor.run)
            actor.tell(object())
    assert actor.state == "failed"


async def test_ask_times_out_and_the_actor_carries_on() -> None:
    actor = Recorder()
    async with anyio.create_task_group() as tg:
        await tg.start(actor.run)
        with pytest.raises(TimeoutError):
            await actor.ask(("sleep", 0.05), timeout=0.01)
        assert actor.state == "running"
        assert await actor.ask(("echo", "after"), timeout=1.0) == "after"
        actor.request_stop()


async def test_tell_on_full_mailbox_raises_mailbox_full() -> None:
    class Small(Recorder):
        mailbox_size = 2

    actor = Small()
    async with anyio.create_task_group() as tg:
        await tg.start(actor.run)
        actor.tell("wait_gate")
        await actor.entered.wait()
        actor.tell(("echo", 1))
        actor.tell(("echo", 2))
        assert actor.queued == 2
        with pytest.raises(MailboxFull, match="full"):
            actor.tell(("echo", 3))
        actor.gate.set()
        assert await actor.ask(("echo", 4)) == 4
        actor.request_stop()
    assert actor.log[1:] == ["waiting", "gate passed", "echo:1", "echo:2", "echo:4", "stop"]


async def test_send_waits_for_room_in_the_mailbox() -> None:
    class Small(Recorder):
        mailbox_size = 1

    actor = Small()
    async with anyio.create_task_group() as tg:
        await tg.start(actor.run)
        actor.tell("wait_gate")
        await actor.entered.wait()
        actor.tell(("echo", 1))
        sent = anyio.Event()

        async def sender() -> None:
            await actor.send(("echo", 2))
            sent.set()

        tg.start_soon(sender)
        await wait_until_async(lambda: actor._send.statistics().tasks_waiting_send == 1)
        assert not sent.is_set()
        actor.gate.set()
        await sent.wait()
        assert await actor.ask(("echo", 3)) == 3
        actor.request_stop()
    assert actor.log[-4:] == ["echo:1", "echo:2", "echo:3", "stop"]


async def test_request_stop_finishes_current_message_and_fails_queued_asks() -> None:
    actor = Recorder()
    results: dict[str, object] = {}

    async def ask(key: str, message: object) -> None:
        try:
            results[key] = await actor.ask(message)
        except Exception as exc:
            results[key] = exc

    async with anyio.create_task_group() as tg:
        await tg.start(actor.run)
        tg.start_soon(ask, "current", "wait_gate")
        await actor.entered.wait()
        tg.start_soon(ask, "queued", ("echo", "never"))
        await wait_until_async(lambda: actor.queued == 1)
        actor.request_stop()
        assert actor.state == "running"
        with pytest.raises(ActorNotRunning):
            actor.tell(("echo", "refused"))
        actor.gate.set()
    assert results["current"] == "passed"
    assert isinstance(results["queued"], ActorNotRunning)
    assert "echo:never" not in actor.log
    assert actor.log[-1] == "stop"
    assert actor.state == "stopped"


async def test_cancelled_actor_runs_on_stop_and_fails_pending_ask() -> None:
    actor = Recorder()
    outcome: list[BaseException] = []
    actor_scope = anyio.CancelScope()

    async def run_actor(*, task_status: TaskStatus[None]) -> None:
        with actor_scope:
            await actor.run(task_status=task_status)

    async def ask() -> None:
        try:
            await actor.ask("wait_gate")
        except ActorNotRunning as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        await tg.start(run_actor)
        tg.start_soon(ask)
        await actor.entered.wait()
        actor_scope.cancel()
    assert actor.state == "stopped"
    assert actor.log == ["start", "waiting", "stop"]
    assert len(outcome) == 1
    with pytest.raises(ActorNotRunning):
        await actor.ask(("echo", 1))


async def test_failing_on_start_fails_the_start() -> None:
    class Broken(Recorder):
        async def on_start(self) -> None:
            raise RuntimeError("no database")

    actor = Broken()
    with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="no database")):
        async with anyio.create_task_group() as tg:
            await tg.start(actor.run)
    assert actor.state == "failed"
    assert actor.log == []


async def test_on_stop_is_bounded_by_shutdown_timeout() -> None:
    class SlowStop(Recorder):
        shutdown_timeout = 0.05

        async def on_stop(self) -> None:
            await anyio.sleep(10)

    actor = SlowStop()
    async with anyio.create_task_group() as tg:
        await tg.start(actor.run)
        started = anyio.current_time()
        actor.request_stop()
    assert anyio.current_time() - started < 1.0
    assert actor.state == "stopped"


async def test_an_actor_runs_only_once() -> None:
    actor = Recorder()
    async with anyio.create_task_group() as tg:
        await tg.start(actor.run)
        actor.request_stop()
    with pytest.raises(RuntimeError, match="already run"):
        await actor.run()


def test_envelope_tells_ask_from_tell() -> None:
    assert Envelope("m").reply_to is None
