"""AdminClient: a blocking client of the daemon's admin socket (used by ``promodctl``).

One connection, many calls, each answered in order::

    with AdminClient("/run/promod/admin.sock", timeout=10) as client:
        print(client.call("status"))
        client.call("log-level", {"level": "debug"})

A refusal or failure answered by the daemon raises :class:`CommandError`; a daemon that
cannot be reached, or does not answer within ``timeout``, raises :class:`DaemonUnreachable`.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

from promod.admin.protocol import decode_response, encode_request
from promod.admin.registry import CommandError

__all__ = ["AdminClient", "CommandError", "DaemonUnreachable"]

_MAX_RESPONSE = 256 * 1024 * 1024


class DaemonUnreachable(Exception):
    """No daemon answered on the admin socket (not running, wrong path, timeout)."""


class AdminClient:
    """Blocking admin-socket connection; opened on first call or by ``with``."""

    def __init__(self, socket_path: Path | str, timeout: float | None = 10.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._next_id = 1

    def __enter__(self) -> AdminClient:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(os.fspath(self.socket_path))
        except (OSError, ValueError) as exc:
            sock.close()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise DaemonUnreachable(f"cannot connect to {self.socket_path}: {reason}") from exc
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer.clear()

    def call(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        """Run ``cmd`` with ``args`` and return its result."""
        self.connect()
        assert self._sock is not None
        request_id = self._next_id
        self._next_id += 1
        try:
            self._sock.sendall(encode_request(request_id, cmd, args))
            line = self._readline()
        except TimeoutError as exc:
            self.close()
            raise DaemonUnreachable(
                f"no answer from {self.socket_path} within {self.timeout}s"
            ) from exc
        except OSError as exc:
            self.close()
            raise DaemonUnreachable(f"connection to {self.socket_path} lost: {exc}") from exc
        try:
            response = decode_response(line)
        except ValueError as exc:
            self.close()
            raise DaemonUnreachable(f"not an admin response from {self.socket_path}") from exc
        if response.id != request_id and response.id is not None:
            self.close()
            raise DaemonUnreachable(f"response id {response.id!r} for request {request_id}")
        if response.error is not None:
            raise response.error
        return response.result

    def _readline(self) -> bytes:
        assert self._sock is not None
        start = 0
        while True:
            index = self._buffer.find(b"\n", start)
            if index >= 0:
                line = bytes(self._buffer[:index])
                del self._buffer[: index + 1]
                return line
            start = len(self._buffer)
            if start > _MAX_RESPONSE:
                raise OSError("response too large")
            chunk = self._sock.recv(65536)
            if not chunk:
                raise OSError("the daemon closed the connection")
            self._buffer += chunk
