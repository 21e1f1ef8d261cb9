"""JSON-lines framing of the admin socket: one request per line, one response per line.

::

    -> {"id": 7, "cmd": "campaign.pause", "args": {"campaign": "winback-30d"}}
    <- {"id": 7, "ok": true, "result": {...}}
    <- {"id": 7, "ok": false, "error": {"code": "not_found", "message": "...", "details": null}}

Used by the server (:class:`LineReader`, :func:`decode_request`, :func:`encode_result`,
:func:`encode_error`) and by the blocking client (:func:`encode_request`,
:func:`decode_response`)::

    reader = LineReader(stream)
    while (line := await reader.readline()) is not None:
        request = decode_request(line)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import PurePath
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream

from promod.admin.registry import ERROR_CODES, CommandError
from promod.surrogates import SURROGATE_MESSAGE, find_surrogate

__all__ = [
    "MAX_LINE",
    "LineReader",
    "LineTooLong",
    "MalformedRequest",
    "Request",
    "Response",
    "decode_request",
    "decode_response",
    "dumps",
    "encode_error",
    "encode_request",
    "encode_result",
]

MAX_LINE = 1024 * 1024  # bytes per request line, newline excluded


class LineTooLong(Exception):
    """A line exceeded the limit; it has been skipped up to and including its newline."""


class MalformedRequest(CommandError):
    """A ``bad_request`` that still carries the request id when one could be read."""

    def __init__(self, message: str, request_id: Any = None) -> None:
        super().__init__("bad_request", message)
        self.request_id = request_id


@dataclass(frozen=True)
class Request:
    id: Any
    cmd: str
    args: Any  # checked against the command's ArgSpecs by the registry


@dataclass(frozen=True)
class Response:
    id: Any
    ok: bool
    result: Any = None
    error: CommandError | None = None


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> str:
    """Compact JSON; datetimes, paths, decimals, enums, sets and dataclasses are converted."""
    return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def _line(obj: dict[str, Any]) -> bytes:
    try:
        return dumps(obj).encode() + b"\n"
    except UnicodeEncodeError:
        # Text that is not valid Unicode (a lone surrogate) still leaves as valid JSON:
        # escaped, never as bytes the peer cannot decode.
        text = json.dumps(obj, default=_json_default, ensure_ascii=True, separators=(",", ":"))
        return text.encode() + b"\n"


def encode_request(request_id: Any, cmd: str, args: dict[str, Any] | None = None) -> bytes:
    return _line({"id": request_id, "cmd": cmd, "args": args or {}})


def encode_result(request_id: Any, result: Any) -> bytes:
    """A success line; TypeError when ``result`` cannot be expressed as JSON."""
    return _line({"id": request_id, "ok": True, "result": result})


def encode_error(request_id: Any, error: CommandError) -> bytes:
    return _line({"id": request_id, "ok": False, "error": error.to_dict()})


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


def decode_request(line: bytes) -> Request:
    """Parse one request line; :class:`MalformedRequest` when it is not a request object.

    Text holding a lone surrogate (``"\\ud800"``), anywhere in the request, is refused
    with the path where it was (``args.name``).
    """
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest(f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedRequest("a request must be a JSON object {id, cmd, args}")
    request_id = obj.get("id")
    if not _valid_id(request_id):
        raise MalformedRequest("'id' must be a string, a number or null")
    if isinstance(request_id, str) and find_surrogate(request_id) is not None:
        raise MalformedRequest(f"id: {SURROGATE_MESSAGE}")
    where = find_surrogate(obj)
    if where is not None:
        raise MalformedRequest(f"{where}: {SURROGATE_MESSAGE}", request_id)
    unknown = sorted(set(obj) - {"id", "cmd", "args"})
    if unknown:
        raise MalformedRequest(f"unknown request field(s): {', '.join(unknown)}", request_id)
    cmd = obj.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise MalformedRequest("'cmd' must be a non-empty string", request_id)
    return Request(id=request_id, cmd=cmd, args=obj.get("args"))


def decode_response(line: bytes) -> Response:
    """Parse one response line (client side); ValueError when it is not a response."""
    obj = json.loads(line)
    if not isinstance(obj, dict) or not isinstance(obj.get("ok"), bool):
        raise ValueError("not an admin response")
    if obj["ok"]:
        return Response(id=obj.get("id"), ok=True, result=obj.get("result"))
    error = obj.get("error")
    if not isinstance(error, dict):
        raise ValueError("error response without an error object")
    code = error.get("code")
    details = error.get("details")
    exc = CommandError(
        code if code in ERROR_CODES else "internal",
        str(error.get("message", "")),
        details if isinstance(details, dict) else None,
    )
    if code not in ERROR_CODES:
        exc.code = str(code)
    return Response(id=obj.get("id"), ok=False, error=exc)


class LineReader:
    """Reads newline-terminated lines of at most ``limit`` bytes from a byte stream.

    An over-long line raises :class:`LineTooLong` once, after it has been skipped, so the
    connection can answer an error and carry on with the next line. A trailing
    unterminated fragment at end of stream counts as a last line.
    """

    def __init__(self, stream: ByteReceiveStream, limit: int = MAX_LINE) -> None:
        self._stream = stream
        self._limit = limit
        self._buffer = bytearray()
        self._eof = False

    async def _fill(self) -> bool:
        if self._eof:
            return False
        try:
            chunk = await self._stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._eof = True
            return False
        self._buffer += chunk
        return True

    async def readline(self) -> bytes | None:
        """The next line without its newline, or None at end of stream."""
        skipping = False
        start = 0
        while True:
            index = self._buffer.find(b"\n", start)
            if index >= 0:
                line = bytes(self._buffer[:index])
                del self._buffer[: index + 1]
                if skipping or len(line) > self._limit:
                    raise LineTooLong(f"request line longer than {self._limit} bytes")
                return line
            if len(self._buffer) > self._limit:
                skipping = True
                self._buffer.clear()
            start = len(self._buffer)
            if not await self._fill():
                if skipping:
                    raise LineTooLong(f"request line longer than {self._limit} bytes")
                if self._buffer:
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    return line
                return None
