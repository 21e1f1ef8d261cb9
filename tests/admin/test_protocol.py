"""JSON-lines framing: request decoding, response encoding, bounded line reading."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from promod.admin.protocol import (
    LineReader,
    LineTooLong,
    MalformedRequest,
    decode_request,
    decode_response,
    encode_error,
    encode_request,
    encode_result,
)
from promod.admin.registry import CommandError


def test_request_round_trip() -> None:
    request = decode_request(encode_request(7, "campaign.pause", {"campaign": "w"}).rstrip())
    assert (request.id, request.cmd, request.args) == (7, "campaign.pause", {"campaign": "w"})


@pytest.mark.parametrize(
    ("line", "request_id"),
    [
        (b"{not json", None),
        (b"\xff\xfe", None),
        (b"[1, 2]", None),
        (b'{"id": 3}', 3),
        (b'{"id": "a", "cmd": 5}', "a"),
        (b'{"id": 4, "cmd": "ping", "extra": 1}', 4),
        (b'{"id": {"x": 1}, "cmd": "ping"}', None),
    ],
)
def test_malformed_requests_are_bad_request_keeping_the_id(line: bytes, request_id: object) -> None:
    with pytest.raises(MalformedRequest) as info:
        decode_request(line)
    assert info.value.code == "bad_request"
    assert info.value.request_id == request_id


def test_responses_encode_edge_types_and_decode() -> None:
    line = encode_result(
        1, {"at": dt.datetime(2026, 1, 2, tzinfo=dt.UTC), "p": Path("/x"), "d": Decimal("5.00")}
    )
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["result"] == {"at": "2026-01-02T00:00:00+00:00", "p": "/x", "d": "5.00"}
    ok = decode_response(line)
    assert ok.ok and ok.id == 1
    bad = decode_response(encode_error(2, CommandError("forbidden", "no", {"required": "admin"})))
    assert not bad.ok and bad.error is not None
    assert (bad.error.code, bad.error.message, bad.error.details) == (
        "forbidden",
        "no",
        {"required": "admin"},
    )
    with pytest.raises(TypeError):
        encode_result(3, object())


@pytest.mark.anyio
async def test_line_reader_skips_an_over_long_line_and_carries_on() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](10)
    reader = LineReader(receive, limit=10)  # type: ignore[arg-type]
    async with send:
        await send.send(b"short\n" + b"x" * 8)
        await send.send(b"y" * 8 + b"z" * 30 + b"\nnext\n")
        await send.send(b"tail")
    assert await reader.readline() == b"short"
    with pytest.raises(LineTooLong):
        await reader.readline()
    assert await reader.readline() == b"next"
    assert await reader.readline() == b"tail"
    assert await reader.readline() is None
