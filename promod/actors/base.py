"""Actors: one concern, its own state, messages through a bounded mailbox.

An actor handles one message at a time. ``tell`` drops a message in the mailbox
and returns at once; ``ask`` waits for the handler's result. Every actor answers
``Settle`` (from :mod:`promod.actors.messages`) by running :meth:`Actor.settle`. An exception raised
while handling an ``ask`` goes back to the caller and the actor carries on; an
exception raised while handling a ``tell`` crashes the actor (``run()`` raises)
so that its supervisor decides what to do.

    class Counter(Actor):
        name = "counter"

        def __init__(self) -> None:
            super().__init__()
            self.total = 0

        async def receive(self, message: object) -> object:
            match message:
                case ("add", int(n)):
                    self.total += n
                    return self.total
            raise UnknownMessage(self, message)

    counter = Counter()
    async with anyio.create_task_group() as tg:
        await tg.start(counter.run)
        counter.tell(("add", 2))
        assert await counter.ask(("add", 3)) == 5
        counter.request_stop()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from promod.actors.messages import Settle

__all__ = [
    "Actor",
    "ActorNotRunning",
    "Envelope",
    "MailboxFull",
    "Reply",
    "UnknownMessage",
]

log = structlog.stdlib.get_logger("promod.actors")


class MailboxFull(Exception):
    """``tell`` found the actor's mailbox full."""

    def __init__(self, actor: str, size: int) -> None:
        super().__init__(f"mailbox of actor {actor!r} is full ({size} messages)")
        self.actor = actor
        self.size = size


class ActorNotRunning(Exception):
    """The actor is stopping or stopped: it takes no more messages and will not answer."""

    def __init__(self, actor: str, state: str) -> None:
        super().__init__(f"actor {actor!r} is not running (state {state})")
        self.actor = actor
        self.state = state


class UnknownMessage(TypeError):
    """An actor was sent a message it has no handler for."""

    def __init__(self, actor: Actor, message: object) -> None:
        super().__init__(f"actor {actor.name!r} cannot handle {type(message).__name__} message")
        self.actor = actor.name
        self.message = message


class Reply:
    """One-shot slot through which the actor answers an ``ask``."""

    __slots__ = ("_error", "_event", "_value")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def set_result(self, value: object) -> None:
        if not self._event.is_set():
            self._value = value
            self._event.set()

    def set_error(self, error: BaseException) -> None:
        if not self._event.is_set():
            self._error = error
            self._event.set()

    async def wait(self) -> Any:
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message in a mailbox; ``reply_to`` is set for ``ask`` and None for ``tell``."""

    message: object
    reply_to: Reply | None = None


class Actor:
    """Base class: override ``receive`` (and optionally ``on_start`` / ``on_stop``).

    A subclass that defines ``__init__`` must call ``super().__init__()``. An
    instance runs once; a supervisor builds a fresh one for every restart.
    """

    name: str = "actor"
    mailbox_size: int = 1000
    shutdown_timeout: float = 5.0
    """Bound on ``on_stop``; a supervisor sets it from the child's spec."""

    def __init__(self) -> None:
        self.state: str = "starting"
        """One of "starting", "running", "stopping", "stopped", "failed"."""
        self._send: MemoryObjectSendStream[Envelope]
        self._recv: MemoryObjectReceiveStream[Envelope]
        self._send, self._recv = anyio.create_memory_object_stream[Envelope](self.mailbox_size)
        self._ran = False
        self._stop_requested = False
        self._stop_deadline: float | None = None
        self._current: Envelope | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.state}>"

    # -- hooks -----------------------------------------------------------------

    async def on_start(self) -> None:
        """Prepare state before the first message; raising here fails the start."""

    async def on_stop(self) -> None:
        """Release resources; runs after a clean stop and after a crash."""

    async def receive(self, message: object) -> object:
        """Handle one message; the result goes back to ``ask``. Unknown messages raise."""
        raise UnknownMessage(self, message)

    async def settle(self) -> None:
        """Do every piece of work that is due now (the ``Settle`` message); by default none.

        An actor whose ``background`` works on a timeline runs one pass of it here,
        serialised with the background's own passes, so that after ``settle`` nothing
        due at this moment is left undone (see :mod:`promod.actors.settle`).
        """

    # -- sending ---------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """True while messages are taken (starting or running, no stop requested)."""
        return self.state in ("starting", "running") and not self._stop_requested

    @property
    def queued(self) -> int:
        """Messages waiting in the mailbox."""
        return self._send.statistics().current_buffer_used

    def tell(self, message: object) -> None:
        """Queue ``message`` now; MailboxFull when full, ActorNotRunning when stopped."""
        if not self.accepting:
            raise ActorNotRunning(self.name, self.state)
        try:
            self._send.send_nowait(Envelope(message))
        except anyio.WouldBlock:
            raise MailboxFull(self.name, self.mailbox_size) from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ActorNotRunning(self.name, self.state) from None

    async def send(self, message: object) -> None:
        """Queue ``message``, waiting for room in the mailbox."""
        await self._put(Envelope(message))

    async def ask(self, message: object, timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        """Send ``message`` and wait for the handler's result (or its exception).

        TimeoutError when no answer comes within ``timeout`` seconds (waiting for
        mailbox room included); the message may still be handled later.
        """
        reply = Reply()
        with anyio.fail_after(timeout):
            await self._put(Envelope(message, reply))
            return await reply.wait()

    async def _put(self, envelope: Envelope) -> None:
        if not self.accepting:
            raise ActorNotRunning(self.name, self.state)
        try:
            await self._send.send(envelope)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ActorNotRunning(self.name, self.state) from None

    # -- lifecycle -------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop taking messages; finish the message in hand, run ``on_stop``, return from run().

        Messages still queued are dropped (an ``ask`` among them gets ActorNotRunning).
        """
        if self._stop_requested:
            return
        self._stop_requested = True
        self._stop_deadline = anyio.current_time() + self.shutdown_timeout
        self._send.close()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """``on_start``, signal started, handle messages until stopped, ``on_stop``."""
        if self._ran:
            raise RuntimeError(f"actor {self.name!r} has already run; build a new instance")
        self._ran = True
        self.state = "starting"
        try:
            await self.on_start()
        except BaseException:
            self.state = "failed"
            self._close_mailbox()
            raise
        if self._stop_requested:
            self.state = "stopping"
        else:
            self.state = "running"
        task_status.started()

        error: BaseException | None = None
        try:
            await self._loop_with_background()
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.state = "stopping"
            self._close_mailbox()
            failed = isinstance(error, Exception)
            try:
                await self._run_on_stop()
            except Exception:
                if error is None:
                    failed = True
                    raise
                log.exception("on_stop failed after a crash", actor=self.name)
            finally:
                self.state = "failed" if failed else "stopped"

    async def background(self) -> None:
        """Optional long-running work beside the mailbox (timers, queues).

        It runs from after ``on_start`` until the actor stops; an exception in it
        crashes the actor like a failed ``tell``.
        """

    async def _loop_with_background(self) -> None:
        if type(self).background is Actor.background:
            await self._loop()
            return
        failure: list[BaseException] = []

        async def guarded() -> None:
            try:
                await self.background()
            except Exception as exc:
                failure.append(exc)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(guarded)
            await self._loop()
            tg.cancel_scope.cancel()
        if failure:
            raise failure[0]

    async def _loop(self) -> None:
        async for envelope in self._recv:
            if self._stop_requested:
                self._fail_envelope(envelope)
                return
            self._current = envelope
            await self._handle(envelope)
            self._current = None

    async def _dispatch(self, message: object) -> object:
        if isinstance(message, Settle):
            await self.settle()
            return None
        return await self.receive(message)

    async def _handle(self, envelope: Envelope) -> None:
        reply = envelope.reply_to
        if reply is None:
            await self._dispatch(envelope.message)
            return
        try:
            result = await self._dispatch(envelope.message)
        except Exception as exc:
            reply.set_error(exc)
        else:
            reply.set_result(result)

    async def _run_on_stop(self) -> None:
        deadline = self._stop_deadline
        if deadline is None:
            deadline = anyio.current_time() + self.shutdown_timeout
        with anyio.CancelScope(shield=True, deadline=deadline) as scope:
            await self.on_stop()
        if scope.cancelled_caught:
            log.warning("on_stop exceeded shutdown_timeout", actor=self.name)

    def _fail_envelope(self, envelope: Envelope) -> None:
        if envelope.reply_to is not None:
            envelope.reply_to.set_error(ActorNotRunning(self.name, "stopping"))

    def _close_mailbox(self) -> None:
        """Refuse new messages and fail every ask left in the mailbox."""
        self._stop_requested = True
        self._send.close()
        if self._current is not None:
            self._fail_envelope(self._current)
            self._current = None
        while True:
            try:
                envelope = self._recv.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            self._fail_envelope(envelope)
        self._recv.close()
