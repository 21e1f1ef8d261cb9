"""AdminServer: the admin Unix socket, a supervised Service.

Binds the socket (removing a stale one left by a crashed daemon, refusing to start when
another daemon still answers on it), sets its mode before it accepts, then serves
JSON-lines requests, many per connection, each answered in order. For every request the
peer's role is resolved from SO_PEERCRED against ``app.config.admin.roles`` (read on each
request, so a config reload applies to open connections), checked, the arguments
validated and the handler run. Mutating commands and every refusal go to the audit
log; refusals of read-only commands at most once per uid, command and minute, with a
count of the rest (:mod:`promod.admin.refusals`). At most ``max_connections`` are open
at once (one more gets an ``unavailable`` error line and is closed), a connection silent
for ``idle_timeout`` seconds is closed, and a store outage is answered as ``unavailable``
with the problem (``disk full: ...``)::

    server = AdminServer(app, app.commands, Path("/run/promod/admin.sock"), 0o660)
    async with anyio.create_task_group() as tg:
        await tg.start(server.run)
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import structlog

from promod.admin.protocol import (
    MAX_LINE,
    LineReader,
    LineTooLong,
    MalformedRequest,
    Request,
    decode_request,
    encode_error,
    encode_result,
)
from promod.admin.refusals import READ_REFUSAL_WINDOW, RefusalLimiter
from promod.admin.registry import Caller, Command, CommandContext, CommandError, CommandRegistry
from promod.admin.roles import peer_credentials, resolve_caller
from promod.store.health import StoreUnavailable, is_outage

__all__ = ["AdminServer", "SocketInUse"]

log = structlog.get_logger("promod.admin")


IDLE_TIMEOUT = 60.0  # seconds a connection may wait between requests (or inside one line)
ACCEPT_RETRY = 0.1  # seconds to wait after accept() ran out of descriptors
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class _AcceptErrors:
    """accept() failures for want of descriptors, logged at most once per ``interval``."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.count = 0
        self._last = -interval
        self._reported = 0

    def note(self, exc: OSError) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last >= self.interval:
            log.error("admin accept failed", error=exc.strerror, times=self.count - self._reported)
            self._reported = self.count
            self._last = now


class SocketInUse(RuntimeError):
    """Another process is accepting connections on the admin socket path."""


def _socket_is_live(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


class AdminServer:
    """Serves ``registry``'s commands for ``app`` on the Unix socket ``socket_path``."""

    name = "admin"

    def __init__(
        self,
        app: Any,
        registry: CommandRegistry,
        socket_path: Path | str,
        mode: int = 0o660,
        *,
        line_limit: int = MAX_LINE,
        max_connections: int = 16,
        idle_timeout: float = IDLE_TIMEOUT,
        refusal_window: float = READ_REFUSAL_WINDOW,
        refusal_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.refusals = RefusalLimiter(refusal_window, refusal_clock)
        self.registry = registry
        self.socket_path = Path(socket_path)
        self.mode = mode
        self.line_limit = line_limit
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.connections = 0  # currently open
        self.turned_away = 0  # connections turned away at max_connections
        self._accept_errors = _AcceptErrors()
        self._idle = anyio.Event()
        self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no connection is open (e.g. to let clients finish before a stop)."""
        while self.connections:
            await self._idle.wait()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        listener = await self._bind()
        inode = os.stat(self.socket_path).st_ino
        log.info("admin socket listening", path=str(self.socket_path), mode=oct(self.mode))
        try:
            task_status.started()
            await self._accept_loop(listener)
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()
                await self._audit_suppressed(everything=True)
            self._unlink_if_ours(inode)

    async def _bind(self) -> anyio.abc.SocketListener:
        path = self.socket_path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise SocketInUse(f"{path} exists and is not a socket; refusing to replace it")
            if await anyio.to_thread.run_sync(_socket_is_live, path):
                raise SocketInUse(f"another process is serving the admin socket {path}")
            log.info("removing stale admin socket", path=str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        return await anyio.create_unix_listener(path, mode=self.mode)

    def _unlink_if_ours(self, inode: int) -> None:
        try:
            if os.lstat(self.socket_path).st_ino == inode:
                os.unlink(self.socket_path)
        except OSError:
            pass

    async def _accept_loop(self, listener: anyio.abc.SocketListener) -> None:
        """Accept for ever; past ``max_connections`` a newcomer gets an error and is closed.

        Running out of descriptors is logged at most every few seconds and accepting
        resumes after a short pause, so the socket stays reachable once one is free.
        """
        async with anyio.create_task_group() as tg:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in _RESOURCE_ERRNOS:
                        raise
                    self._accept_errors.note(exc)
                    await anyio.sleep(ACCEPT_RETRY)
                    continue
                if self.connections >= self.max_connections:
                    self.turned_away += 1
                    tg.start_soon(self._refuse, stream)
                    continue
                if self.connections == 0:
                    self._idle = anyio.Event()
                self.connections += 1
                tg.start_soon(self._serve_connection, stream)

    async def _refuse(self, stream: anyio.abc.SocketStream) -> None:
        error = CommandError(
            "unavailable",
            f"too many admin connections ({self.connections} open); try again",
        )
        with anyio.move_on_after(1.0):
            try:
                await stream.send(encode_error(None, error))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass
        with anyio.CancelScope(shield=True):
            await stream.aclose()

    async def _serve_connection(self, stream: anyio.abc.SocketStream) -> None:
        """One connection (counted in ``connections`` by the accept loop)."""
        try:
            async with stream:
                raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)  # noqa: S610
                pid, uid, gid = peer_credentials(raw)
                reader = LineReader(stream, self.line_limit)
                while True:
                    line: bytes | None = None
                    with anyio.move_on_after(self.idle_timeout) as idle:
                        try:
                            line = await reader.readline()
                        except LineTooLong as exc:
                            error = CommandError("bad_request", str(exc))
                            await stream.send(encode_error(None, error))
                            continue
                    if idle.cancelled_caught:
                        log.info("admin connection idle; closed", seconds=self.idle_timeout)
                        return
                    if line is None:
                        return
                    if not line.strip():
                        continue
                    await stream.send(await self.handle_line(line, pid, uid, gid))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
            pass
        except Exception:
            log.exception("admin connection failed")
        finally:
            self.connections -= 1
            if self.connections == 0:
                self._idle.set()

    async def handle_line(self, line: bytes, pid: int, uid: int, gid: int) -> bytes:
        """The response line for one request line from the peer ``(pid, uid, gid)``."""
        try:
            request = decode_request(line)
        except MalformedRequest as exc:
            return encode_error(exc.request_id, exc)
        caller = resolve_caller(pid, uid, gid, self._roles())
        try:
            result = await self.dispatch(caller, request)
        except CommandError as exc:
            return encode_error(request.id, exc)
        try:
            return encode_result(request.id, result)
        except (TypeError, ValueError):
            log.exception("admin result is not JSON", command=request.cmd)
            error = CommandError("internal", f"{request.cmd}: result is not JSON serialisable")
            return encode_error(request.id, error)

    def _roles(self) -> Any:
        config = getattr(self.app, "config", None)
        admin = getattr(config, "admin", None)
        return getattr(admin, "roles", None)

    async def dispatch(self, caller: Caller, request: Request) -> Any:
        """Run ``request`` for ``caller``; raises CommandError for any refusal or failure."""
        cmd = self.registry.get(request.cmd)
        if cmd is None:
            raise CommandError(
                "unknown_command",
                f"unknown command {request.cmd!r}; 'help' lists the commands",
                {"command": request.cmd},
            )
        raw_args = request.args if isinstance(request.args, dict) else {}
        await self._audit_suppressed()
        try:
            mutating = cmd.is_mutating(raw_args)
        except Exception:
            mutating = True
        if not cmd.allows(caller.role):
            error = CommandError(
                "forbidden",
                f"{cmd.name} needs role {cmd.role.label if cmd.role else '?'}; "
                f"{caller.user} (uid {caller.uid}) has "
                + (caller.role.label if caller.role else "no role"),
                {"required": cmd.role.label if cmd.role else None},
            )
            if mutating or self.refusals.admit(caller, cmd.name):
                log.warning(
                    "admin command refused",
                    command=cmd.name,
                    user=caller.user,
                    uid=caller.uid,
                    role=caller.role.label if caller.role else None,
                )
                await self._audit(cmd, caller, raw_args, "refused", error)
            raise error
        if mutating and getattr(self.app, "shutting_down", False):
            error = CommandError("unavailable", "the daemon is shutting down")
            await self._audit(cmd, caller, raw_args, "refused", error)
            raise error
        try:
            args = self.registry.validate_args(cmd, request.args)
        except CommandError as exc:
            if mutating:
                await self._audit(cmd, caller, raw_args, "error", exc)
            raise
        try:
            result = await cmd.handler(
                CommandContext(app=self.app, caller=caller, registry=self.registry), args
            )
        except CommandError as exc:
            if mutating:
                await self._audit(cmd, caller, args, "error", exc)
            raise
        except Exception as exc:
            if is_outage(exc):
                # A full disk is an answer, not a crash: the work was rolled back.
                problem = exc if isinstance(exc, StoreUnavailable) else self._outage(exc)
                error = CommandError(
                    "unavailable",
                    f"{cmd.name}: the store takes no writes: {problem}; nothing was changed",
                    problem.to_dict(),
                )
                if mutating:
                    await self._audit(cmd, caller, args, "error", error)
                raise error from None
            log.exception("admin command failed", command=cmd.name, user=caller.user)
            error = CommandError(
                "internal",
                f"{cmd.name} failed ({type(exc).__name__}); see the daemon log",
                {"type": type(exc).__name__},
            )
            if mutating:
                await self._audit(cmd, caller, args, "error", error)
            raise error from None
        if mutating:
            await self._audit(cmd, caller, args, "ok", None)
            log.info("admin command", command=cmd.name, user=caller.user, uid=caller.uid)
        return result

    def _outage(self, exc: BaseException) -> StoreUnavailable:
        db = getattr(self.app, "db", None)
        health = getattr(db, "health", None)
        if health is not None:
            problem: StoreUnavailable = health.failed(exc)
            return problem
        return StoreUnavailable("I/O error", Path("?"), None, repr(exc))

    async def _audit_suppressed(self, *, everything: bool = False) -> None:
        """Record the counts of read-only refusals whose window has passed."""
        for summary in self.refusals.expired(everything=everything):
            cmd = self.registry.get(summary.command)
            if cmd is not None:
                error = CommandError("forbidden", summary.message())
                await self._audit(cmd, summary.caller, {}, "refused", error)

    async def _audit(
        self,
        cmd: Command,
        caller: Caller,
        args: dict[str, Any],
        outcome: str,
        error: CommandError | None,
    ) -> None:
        audit = getattr(self.app, "audit", None)
        if audit is None:
            log.error("no audit log; admin command not recorded", command=cmd.name)
            return
        secret = frozenset(name for name, spec in cmd.args.items() if spec.secret)
        try:
            await audit.append(
                caller,
                cmd.name,
                args,
                outcome,
                str(error) if error is not None else None,
                secret=secret,
            )
        except Exception:
            log.exception("audit write failed", command=cmd.name, outcome=outcome)
