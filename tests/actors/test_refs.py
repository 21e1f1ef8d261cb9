"""Actor refs and wakes: a ref offers tell and ask only, follows restarts, and equal
wakes still queued are merged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from promod.actors.base import Actor, ActorNotRunning
from promod.actors.messages import Inspect, Kick, Wake, Wakeup
from promod.actors.refs import ActorRef, wake
from promod.actors.supervisor import ChildSpec, Supervisor
from promod.app import App
from promod.store.database import Database
from promod.testing import make_app, supervised

pytestmark = pytest.mark.anyio


class Gated(Actor):
    """Counts what it handles; each message waits for ``gate`` so a test can fill the mailbox."""

    name = "gated"

    def __init__(self) -> None:
        super().__init__()
        self.handled: list[object] = []
        self.gate = anyio.Event()
        self.holding = anyio.Event()

    async def receive(self, message: object) -> object:
        if isinstance(message, Inspect):
            return {"handled": len(self.handled)}
        self.holding.set()
        await self.gate.wait()
        self.handled.append(message)
        if message == "crash":
            raise RuntimeError("crash")
        return len(self.handled)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    db = await Database.open(tmp_path / "refs.db")
    try:
        yield make_app(db)
    finally:
        await db.close()


def test_a_ref_offers_only_tell_and_ask() -> None:
    public = {name for name in dir(ActorRef) if not name.startswith("_")}
    assert public == {"ask", "name", "tell"}


async def test_tell_and_ask_reach_the_supervised_instance(app: App) -> None:
    actor = Gated()
    actor.gate.set()
    async with supervised(app, actor):
        ref = app.actor("gated")
        ref.tell("one")
        assert await ref.ask("two") == 2
        assert actor.handled == ["one", "two"]


async def test_a_ref_follows_the_actor_across_a_restart(app: App) -> None:
    made: list[Gated] = []

    def factory() -> Gated:
        made.append(Gated())
        made[-1].gate.set()
        return made[-1]

    supervisor = Supervisor([ChildSpec("gated", factory)], backoff_initial=0.0)
    app.supervisor = supervisor
    ref = app.actor("gated")
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        ref.tell("crash")
        with anyio.fail_after(5):
            while len(made) < 2 or made[-1].state != "running":
                await anyio.sleep(0.01)
        assert await ref.ask("after") == 1
        assert made[-1].handled == ["after"]
        await supervisor.stop()


async def test_tell_and_ask_without_the_actor_raise_not_running(app: App) -> None:
    ref = app.actor("ledger")
    with pytest.raises(ActorNotRunning):
        ref.tell(Kick())
    with pytest.raises(ActorNotRunning):
        await ref.ask(Inspect())


async def test_wake_of_an_absent_actor_is_logged_not_raised(app: App) -> None:
    with capture_logs() as logs:
        assert wake(app.actor("scheduler"), Kick()) is False
    assert [e["event"] for e in logs] == ["actor_not_woken"]
    assert logs[0]["to"] == "scheduler" and logs[0]["message"] == "Kick"


async def test_equal_wakes_still_queued_are_merged(app: App) -> None:
    actor = Gated()
    async with supervised(app, actor):
        ref = app.actor("gated")
        ref.tell("hold")  # in hand until the gate opens
        await actor.holding.wait()
        for _ in range(50):
            assert wake(ref, Kick())
        wake(ref, Wake())
        wake(ref, Wake("mail"))
        wake(ref, Wake())
        actor.gate.set()
        assert await ref.ask(Inspect()) == {"handled": 4}
    assert actor.handled == ["hold", Kick(), Wake(), Wake("mail")]


async def test_a_wake_told_while_one_is_in_hand_is_queued(app: App) -> None:
    actor = Gated()
    async with supervised(app, actor):
        ref = app.actor("gated")
        wake(ref, Kick())
        await actor.holding.wait()  # the first Kick is in hand: it may have looked already
        wake(ref, Kick())
        actor.gate.set()
        assert await ref.ask(Inspect()) == {"handled": 2}
    assert actor.handled == [Kick(), Kick()]


async def test_asks_and_plain_tells_are_never_merged(app: App) -> None:
    actor = Gated()
    async with supervised(app, actor):
        ref = app.actor("gated")
        ref.tell("hold")
        await actor.holding.wait()
        ref.tell("same")
        ref.tell("same")
        wake(ref, Kick())
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.ask, Kick())
            await anyio.sleep(0)
            actor.gate.set()
        assert await ref.ask(Inspect()) == {"handled": 5}
    assert actor.handled == ["hold", "same", "same", Kick(), Kick()]


def test_every_wake_message_is_hashable_and_equal_by_value() -> None:
    kinds = Wakeup.__subclasses__()
    assert {k.__name__ for k in kinds} >= {"Kick", "ProcessDue", "IssuePending", "RunsChanged"}
    for kind in kinds:
        assert kind() == kind() and hash(kind()) == hash(kind())


def test_promod_reads_no_attribute_of_an_actor_ref_but_tell_and_ask() -> None:
    """``app.actor(name)`` is followed by ``.tell``/``.ask``, never by another attribute
    or ``getattr``/``hasattr``/``isinstance``/``vars``."""
    import ast

    import promod

    misuse = []
    for path in sorted(Path(promod.__file__).parent.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "actor"
            ):
                continue
            parent = parents.get(node)
            read = isinstance(parent, ast.Attribute) and parent.attr not in ("tell", "ask")
            peeked = (
                isinstance(parent, ast.Call)
                and isinstance(parent.func, ast.Name)
                and parent.func.id in ("getattr", "hasattr", "isinstance", "vars")
            )
            if read or peeked:
                misuse.append(f"{path.name}:{node.lineno}")
    assert misuse == []
