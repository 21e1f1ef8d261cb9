"""The admin socket refuses text and numbers it cannot carry, and the connection lives on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from promod.admin.registry import ArgSpec, CommandContext, Role, command
from promod.admin.server import AdminServer
from promod.testing import wait_until_async
from tests.admin.conftest import AdminApp, connect, serving

SURROGATE = "text holds a lone surrogate (such as \\ud800), which is not valid Unicode"


@command(
    "test.echo",
    role=Role.VIEWER,
    mutating=False,
    summary="returns its arguments",
    args={"name": ArgSpec(str), "tags": ArgSpec(list), "n": ArgSpec(int)},
)
async def echo(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    return args


@pytest.fixture
def server(app: AdminApp, sock_dir: Path) -> AdminServer:
    app.set_roles(viewer={"users": ["root"]})
    app.commands.register(echo)
    return AdminServer(app, app.commands, sock_dir / "admin.sock", 0o660)


@pytest.mark.anyio
async def test_a_lone_surrogate_as_the_command_gets_an_error_and_the_connection_lives_on(
    server: AdminServer,
) -> None:
    async with serving(server), connect(server.socket_path) as conn:
        await conn.send_line(b'{"id":1,"cmd":"\\ud800"}')
        response = await conn.read()
        assert response["id"] == 1
        assert response["ok"] is False
        assert response["error"]["code"] == "bad_request"
        assert response["error"]["message"] == f"cmd: {SURROGATE}"
        assert (await conn.call("ping"))["ok"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("line", "where"),
    [
        (b'{"id":2,"cmd":"test.echo","args":{"name":"a\\udfffb"}}', "args.name"),
        (b'{"id":2,"cmd":"test.echo","args":{"tags":["ok","\\ud83d"]}}', "args.tags[1]"),
        (b'{"id":2,"cmd":"test.echo","args":{"\\ud800":1}}', "args.\\ud800"),
    ],
)
async def test_a_lone_surrogate_in_any_argument_is_named_not_internal(
    server: AdminServer, line: bytes, where: str
) -> None:
    async with serving(server), connect(server.socket_path) as conn:
        await conn.send_line(line)
        response = await conn.read()
        assert response["id"] == 2
        assert response["error"]["code"] == "bad_request"
        assert response["error"]["message"] == f"{where}: {SURROGATE}"
        assert (await conn.call("test.echo", {"name": "fine"}))["result"] == {"name": "fine"}


@pytest.mark.anyio
async def test_a_lone_surrogate_as_the_request_id_is_answered_without_it(
    server: AdminServer,
) -> None:
    async with serving(server), connect(server.socket_path) as conn:
        await conn.send_line(b'{"id":"\\ud800","cmd":"ping"}')
        response = await conn.read()
        assert response["id"] is None
        assert response["error"]["message"] == f"id: {SURROGATE}"
        assert (await conn.call("ping"))["ok"]


@pytest.mark.anyio
@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
async def test_an_integer_beyond_64_bits_is_refused_naming_the_argument(
    server: AdminServer, value: int
) -> None:
    async with serving(server), connect(server.socket_path) as conn:
        response = await conn.call("test.echo", {"n": value})
        assert response["error"]["code"] == "invalid_args"
        assert "argument 'n' is out of range" in response["error"]["message"]
        assert response["error"]["details"]["argument"] == "n"
        assert (await conn.call("test.echo", {"n": 2**63 - 1}))["result"] == {"n": 2**63 - 1}


def test_outbox_drop_with_an_id_above_2_63_is_refused_naming_the_id() -> None:
    from promod.admin.registry import CommandError, CommandRegistry
    from promod.notify.commands import outbox_drop

    registry = CommandRegistry([outbox_drop])
    with pytest.raises(CommandError) as info:
        registry.validate_args(outbox_drop, {"id": 2**63})
    assert info.value.code == "invalid_args"
    assert "argument 'id' is out of range" in str(info.value)


@pytest.mark.anyio
async def test_past_max_connections_a_newcomer_gets_an_error_and_a_freed_slot_is_reused(
    app: AdminApp, sock_dir: Path
) -> None:

    app.set_roles(viewer={"users": ["root"]})
    server = AdminServer(app, app.commands, sock_dir / "admin.sock", 0o660, max_connections=2)
    async with serving(server), connect(server.socket_path) as first:
        async with connect(server.socket_path) as second:
            assert (await first.call("ping"))["ok"] and (await second.call("ping"))["ok"]
            async with connect(server.socket_path) as third:
                refused = await third.read()
                assert refused["ok"] is False
                assert refused["error"]["code"] == "unavailable"
                assert "too many admin connections" in refused["error"]["message"]
            assert server.turned_away == 1
        await wait_until_async(lambda: server.connections <= 1, timeout=5, what="the close")
        async with connect(server.socket_path) as again:
            assert (await again.call("ping"))["ok"]


@pytest.mark.anyio
async def test_a_silent_admin_connection_is_closed_after_the_idle_timeout(
    app: AdminApp, sock_dir: Path
) -> None:
    import anyio

    server = AdminServer(app, app.commands, sock_dir / "admin.sock", 0o660, idle_timeout=0.3)
    async with serving(server), connect(server.socket_path) as conn:
        await conn.stream.send(b'{"id": 1, "cmd": "pi')  # half a request, then nothing
        with anyio.fail_after(5):
            with pytest.raises((anyio.EndOfStream, anyio.IncompleteRead)):
                await conn.reader.receive_until(b"\n", 1024)
