"""AdminServer on a real Unix socket: roles, audit, errors, lifecycle."""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from promod.admin.registry import ArgSpec, CommandContext, CommandError, Role, command
from promod.admin.server import AdminServer, SocketInUse
from promod.store.database import Database
from tests.admin.conftest import AdminApp, connect, serving

ROOT = {"users": ["root"]}


@command("test.boom", role=Role.VIEWER, mutating=False, summary="raises")
async def boom(ctx: CommandContext, args: dict[str, Any]) -> None:
    raise RuntimeError("kaboom with a secret inside")


@command("test.opaque", role=Role.VIEWER, mutating=False, summary="returns a non-JSON value")
async def opaque(ctx: CommandContext, args: dict[str, Any]) -> object:
    return object()


@command(
    "test.fail",
    role=Role.OPERATOR,
    mutating=True,
    summary="refuses with not_found",
    args={"campaign": ArgSpec(str, required=True)},
)
async def fail(ctx: CommandContext, args: dict[str, Any]) -> None:
    raise CommandError("not_found", f"no campaign {args['campaign']!r}")


async def audit_rows(db: Database) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT user, role, uid, command, args, outcome, error FROM audit_log")
    return [dict(row) for row in rows]


def server_for(app: AdminApp, sock_dir: Path, **kwargs: Any) -> AdminServer:
    return AdminServer(app, app.commands, sock_dir / "admin.sock", 0o660, **kwargs)


@pytest.mark.anyio
async def test_socket_has_mode_0660_and_is_removed_on_stop(app: AdminApp, sock_dir: Path) -> None:
    server = server_for(app, sock_dir)
    async with serving(server):
        st = os.stat(server.socket_path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
    assert not server.socket_path.exists()


@pytest.mark.anyio
async def test_stale_socket_is_replaced_but_a_live_one_is_not(
    app: AdminApp, sock_dir: Path
) -> None:
    path = sock_dir / "admin.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # leaves the file behind, nobody listening
    server = server_for(app, sock_dir)
    async with serving(server):
        async with connect(path) as conn:
            assert (await conn.call("ping"))["ok"]
        with pytest.raises(SocketInUse):
            await server_for(app, sock_dir).run()
        assert path.exists()  # the live daemon keeps its socket
    regular = sock_dir / "admin.sock"
    regular.write_text("not a socket")
    with pytest.raises(SocketInUse, match="not a socket"):
        await server_for(app, sock_dir).run()


@pytest.mark.anyio
async def test_unmapped_caller_may_only_ping_help_version(app: AdminApp, sock_dir: Path) -> None:
    server = server_for(app, sock_dir)
    async with serving(server), connect(server.socket_path) as conn:
        ping = await conn.call("ping")
        assert ping["ok"] and ping["result"]["role"] is None
        assert (await conn.call("version"))["result"]["version"] == app.version
        listing = (await conn.call("help"))["result"]
        allowed = {item["name"] for item in listing if item["allowed"]}
        assert allowed == {"help", "ping", "version"}
        status = await conn.call("status")
        assert not status["ok"] and status["error"]["code"] == "forbidden"


@pytest.mark.anyio
async def test_viewer_is_refused_a_mutating_command_and_the_refusal_is_audited(
    app: AdminApp, db: Database, sock_dir: Path, restore_log_level: None
) -> None:
    app.set_roles(viewer=ROOT)
    logging.getLogger().setLevel(logging.INFO)
    server = server_for(app, sock_dir)
    async with serving(server), connect(server.socket_path) as conn:
        status = await conn.call("status")
        assert status["ok"] and status["result"]["version"] == app.version
        refused = await conn.call("log-level", {"level": "debug"})
        assert not refused["ok"]
        assert refused["error"]["code"] == "forbidden"
        assert "operator" in refused["error"]["message"]
        assert (await conn.call("ping"))["ok"]  # the connection lives on
    assert logging.getLogger().level == logging.INFO
    assert await audit_rows(db) == [
        {
            "user": "root",
            "role": "viewer",
            "uid": os.getuid(),
            "command": "log-level",
            "args": '{"level": "debug"}',
            "outcome": "refused",
            "error": refused["error"]["code"] + ": " + refused["error"]["message"],
        }
    ]


class StepClock:
    """A monotonic clock for the refusal window that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.anyio
async def test_a_loop_of_refused_status_calls_is_audited_once_per_window_with_a_count(
    app: AdminApp, db: Database, sock_dir: Path
) -> None:
    clock = StepClock()
    server = server_for(app, sock_dir, refusal_window=60.0, refusal_clock=clock)
    async with serving(server), connect(server.socket_path) as conn:
        for _ in range(50):
            assert (await conn.call("status"))["error"]["code"] == "forbidden"
        assert (await conn.call("actors"))["error"]["code"] == "forbidden"
        rows = await audit_rows(db)
        assert [(r["command"], r["outcome"], r["uid"]) for r in rows] == [
            ("status", "refused", os.getuid()),
            ("actors", "refused", os.getuid()),
        ]
        assert rows[0]["error"].startswith("forbidden: status needs role viewer")
        assert rows[0]["role"] is None

        clock.now += 61  # the window has passed: the next request records the count
        assert (await conn.call("ping"))["ok"]
        assert (await conn.call("status"))["error"]["code"] == "forbidden"
        assert (await conn.call("status"))["error"]["code"] == "forbidden"
    rows = await audit_rows(db)
    assert [r["command"] for r in rows] == ["status", "actors", "status", "status", "status"]
    summary = rows[2]["error"]
    assert f"49 more refusals of status for uid {os.getuid()} since" in summary
    assert "one record per 60s" in summary
    assert rows[3]["error"].startswith("forbidden: status needs role viewer")
    # The stop recorded the one counted after the second window opened.
    assert "1 more refusal of status" in rows[4]["error"]


@pytest.mark.anyio
async def test_refused_read_only_calls_on_the_system_clock_are_counted_per_window(
    app: AdminApp, db: Database, sock_dir: Path
) -> None:
    server = server_for(app, sock_dir, refusal_window=0.2)
    async with serving(server), connect(server.socket_path) as conn:
        opened = time.monotonic()
        for _ in range(30):
            await conn.call("status")
        while time.monotonic() - opened < 0.25:  # until the first window has passed
            await anyio.sleep(0.05)
        await conn.call("status")
    rows = await audit_rows(db)
    recorded = [r for r in rows if "needs role viewer" in r["error"]]
    counts = [
        int(m.group(1)) for r in rows if (m := re.search(r"(\d+) more refusals? ", r["error"]))
    ]
    assert len(recorded) + len(counts) == len(rows)
    assert counts and len(recorded) < 31
    assert len(recorded) + sum(counts) == 31  # every refusal recorded or counted


@pytest.mark.anyio
async def test_operator_sets_the_log_level_and_it_is_audited(
    app: AdminApp, db: Database, sock_dir: Path, restore_log_level: None
) -> None:
    app.set_roles(viewer=ROOT, operator={"groups": ["root"]})
    logging.getLogger().setLevel(logging.INFO)
    server = server_for(app, sock_dir)
    async with serving(server), connect(server.socket_path) as conn:
        read = await conn.call("log-level")
        assert read["result"] == {"level": "info"}
        changed = await conn.call("log-level", {"level": "debug"})
        assert changed["result"] == {"level": "debug", "previous": "info"}
        bad = await conn.call("log-level", {"level": "loud"})
        assert bad["error"]["code"] == "invalid_args"
    assert logging.getLogger().level == logging.DEBUG
    rows = await audit_rows(db)
    assert [(r["command"], r["role"], r["outcome"]) for r in rows] == [
        ("log-level", "operator", "ok"),
        ("log-level", "operator", "error"),
    ]  # reading the level is not audited


@pytest.mark.anyio
async def test_bad_lines_get_errors_and_the_connection_keeps_working(
    app: AdminApp, sock_dir: Path
) -> None:
    app.set_roles(admin=ROOT)
    server = server_for(app, sock_dir, line_limit=4096)
    async with serving(server), connect(server.socket_path) as conn:
        cases: list[tuple[bytes, str, Any]] = [
            (b"{this is not json", "bad_request", None),
            (b'"just a string"', "bad_request", None),
            (b'{"id": 5, "args": {}}', "bad_request", 5),
            (b'{"id": 6, "cmd": "no.such"}', "unknown_command", 6),
            (b'{"id": 7, "cmd": "audit", "args": {"limit": "ten"}}', "invalid_args", 7),
            (b'{"id": 8, "cmd": "audit", "args": {"colour": "red"}}', "invalid_args", 8),
            (b'{"id": 9, "cmd": "audit", "args": [1]}', "invalid_args", 9),
            (b'{"id": 10, "cmd": "ping", "args": {}, "x": 1}', "bad_request", 10),
            (b"x" * 10_000, "bad_request", None),
        ]
        for line, code, request_id in cases:
            await conn.send_line(line)
            response = await conn.read()
            assert response["ok"] is False, line
            assert response["error"]["code"] == code, line
            assert response["id"] == request_id
            assert (await conn.call("ping"))["ok"]
        await conn.send_line(b"   ")  # blank lines are ignored
        assert (await conn.call("ping"))["ok"]


@pytest.mark.anyio
async def test_pipelined_requests_are_answered_in_order(app: AdminApp, sock_dir: Path) -> None:
    server = server_for(app, sock_dir)
    async with serving(server), connect(server.socket_path) as conn:
        await conn.stream.send(
            b"".join(f'{{"id": {n}, "cmd": "ping"}}\n'.encode() for n in range(20))
        )
        ids = [(await conn.read())["id"] for _ in range(20)]
        assert ids == list(range(20))


@pytest.mark.anyio
async def test_handler_crash_is_an_internal_error_not_a_dead_connection(
    app: AdminApp, db: Database, sock_dir: Path
) -> None:
    app.set_roles(operator=ROOT)
    for cmd in (boom, opaque, fail):
        app.commands.register(cmd)
    server = server_for(app, sock_dir)
    with capture_logs() as logs:
        async with serving(server), connect(server.socket_path) as conn:
            crashed = await conn.call("test.boom")
            assert crashed["error"]["code"] == "internal"
            assert "secret" not in crashed["error"]["message"]
            opaque_result = await conn.call("test.opaque")
            assert opaque_result["error"]["code"] == "internal"
            failed = await conn.call("test.fail", {"campaign": "x"})
            assert failed["error"] == {
                "code": "not_found",
                "message": "no campaign 'x'",
                "details": None,
            }
            missing = await conn.call("test.fail")
            assert missing["error"]["code"] == "invalid_args"
            assert (await conn.call("ping"))["ok"]
    failures = [e for e in logs if e["event"] == "admin command failed"]
    assert [e["command"] for e in failures] == ["test.boom"]
    assert failures[0]["exc_info"] is True
    rows = await audit_rows(db)
    assert [(r["command"], r["outcome"]) for r in rows] == [
        ("test.fail", "error"),
        ("test.fail", "error"),
    ]
    assert rows[0]["error"] == "not_found: no campaign 'x'"


@pytest.mark.anyio
async def test_mutating_commands_are_unavailable_while_shutting_down(
    app: AdminApp, db: Database, sock_dir: Path, restore_log_level: None
) -> None:
    app.set_roles(admin=ROOT)
    app.shutting_down = True
    server = server_for(app, sock_dir)
    async with serving(server), connect(server.socket_path) as conn:
        refused = await conn.call("log-level", {"level": "debug"})
        assert refused["error"]["code"] == "unavailable"
        assert (await conn.call("status"))["ok"]  # reads still work
    rows = await audit_rows(db)
    assert [(r["command"], r["role"], r["outcome"]) for r in rows] == [
        ("log-level", "admin", "refused")
    ]


@pytest.mark.anyio
async def test_role_changes_apply_to_open_connections(app: AdminApp, sock_dir: Path) -> None:
    server = server_for(app, sock_dir)
    async with serving(server), connect(server.socket_path) as conn:
        assert (await conn.call("status"))["error"]["code"] == "forbidden"
        app.set_roles(viewer=ROOT)
        assert (await conn.call("status"))["ok"]


@pytest.mark.anyio
async def test_many_connections_at_once(app: AdminApp, sock_dir: Path) -> None:
    app.set_roles(viewer=ROOT)
    server = server_for(app, sock_dir)
    results: list[bool] = []

    async def client() -> None:
        async with connect(server.socket_path) as conn:
            for _ in range(5):
                results.append((await conn.call("actors"))["ok"])

    async with serving(server):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(client)
    assert results == [True] * 50
