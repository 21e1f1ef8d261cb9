"""The admin socket refuses text and numbers it cannot carry, and the connection lives on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from promod.admin.registry import ArgSpec, CommandContext, Role, command
from promod.admin.server import AdminServer
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
