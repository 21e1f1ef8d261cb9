"""Built-in commands called through a real admin socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from promod.admin.commands import BUILTIN_COMMANDS, register_builtin_commands
from promod.admin.registry import Caller, CommandRegistry, Role
from promod.admin.server import AdminServer
from tests.admin.conftest import AdminApp, connect, serving


def test_builtin_commands_and_their_roles() -> None:
    registry = register_builtin_commands(CommandRegistry())
    assert registry.names() == sorted(
        [
            "help",
            "version",
            "ping",
            "status",
            "actors",
            "plugins",
            "log-level",
            "audit",
            "debug.settle",
        ]
    )
    public = {cmd.name for cmd in BUILTIN_COMMANDS if cmd.role is None}
    assert public == {"help", "ping", "version"}
    log_level = registry.get("log-level")
    assert log_level is not None and log_level.role is Role.OPERATOR
    assert not log_level.is_mutating({}) and log_level.is_mutating({"level": "debug"})
    settle = registry.get("debug.settle")
    assert settle is not None and settle.role is Role.ADMIN


@pytest.mark.anyio
async def test_viewer_commands_return_app_state(app: AdminApp, sock_dir: Path) -> None:
    app.set_roles(viewer={"users": ["root"]})
    await app.audit.append(Caller(1, 1, 1, "alice", Role.ADMIN), "kill.engage", {}, "ok")
    server = AdminServer(app, app.commands, sock_dir / "a.sock")
    async with serving(server), connect(server.socket_path) as conn:
        status = (await conn.call("status"))["result"]
        assert status["database"] == str(app.db.path)
        actors = (await conn.call("actors"))["result"]
        assert [a["name"] for a in actors] == ["idle"]
        plugins = (await conn.call("plugins"))["result"]
        assert plugins[0]["name"] == "promod.builtin.commands"
        rows = (await conn.call("audit", {"since": "1h", "limit": 10}))["result"]
        assert [(r["user"], r["command"]) for r in rows] == [("alice", "kill.engage")]
        too_many = await conn.call("audit", {"limit": 0})
        assert too_many["error"]["code"] == "invalid_args"
        described = (await conn.call("help", {"command": "audit"}))["result"]
        assert described["role"] == "viewer" and "since" in described["args"]
        missing = await conn.call("help", {"command": "nope"})
        assert missing["error"]["code"] == "not_found"
