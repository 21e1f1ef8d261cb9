"""promodctl against a real admin server: output, --json, exit codes, socket lookup."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promod.admin.registry import ArgSpec, CommandContext, Role, command
from promod.ctl import main as ctl
from promod.ctl.main import (
    DEFAULT_SOCKET,
    CtlCommand,
    UsageError,
    build_parser,
    main,
    param,
    resolve_socket,
)
from promod.ctl.render import format_timestamp, set_site_timezone
from tests.ctl.conftest import Daemon


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("PROMOD_SOCKET", raising=False)
    monkeypatch.delenv("PROMOD_CONFIG", raising=False)
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


def run(daemon: Daemon, *argv: str) -> int:
    return main(["--socket", str(daemon.socket), *argv])


def test_status_prints_key_values_and_an_actor_table(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(daemon, "status") == 0
    out = capsys.readouterr().out
    assert "version:" in out and daemon.app.version in out
    assert "NAME" in out and "RESTART TYPE" in out and "idle" in out


def test_json_prints_the_raw_result(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(daemon, "--json", "status") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["version"] == daemon.app.version
    assert status["actors"][0]["name"] == "idle"


def test_actors_and_plugins_tables(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(daemon, "actors") == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "NAME",
        "STATE",
        "RESTARTS",
        "RESTART",
        "TYPE",
        "STARTED",
        "AT",
        "LAST",
        "ERROR",
    ]
    assert row.split()[:3] == ["idle", "new", "0"]
    assert run(daemon, "plugins") == 0
    out = capsys.readouterr().out
    assert "promod.builtin.commands" in out and "command:status" in out


def test_log_level_reads_and_sets(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    assert run(daemon, "log-level") == 0
    assert capsys.readouterr().out.strip() == "log level warning"
    assert run(daemon, "log-level", "debug") == 0
    assert capsys.readouterr().out.strip() == "log level warning -> debug"
    assert logging.getLogger().level == logging.DEBUG
    assert run(daemon, "log-level", "chatty") == 2
    assert "invalid choice" in capsys.readouterr().err
    rows = daemon.audit()
    assert [(r["command"], r["args"], r["outcome"]) for r in rows] == [
        ("log-level", {"level": "debug"}, "ok")
    ]


def test_refusal_exits_1_with_the_code_on_stderr(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.app.set_roles(viewer={"users": ["root"]})
    assert run(daemon, "log-level", "debug") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("promodctl: forbidden: log-level needs role operator")
    (row,) = daemon.audit()
    assert (row["user"], row["role"], row["outcome"]) == ("root", "viewer", "refused")


def test_audit_table_and_json(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(daemon, "log-level", "info") == 0
    assert run(daemon, "log-level", "warning") == 0
    capsys.readouterr()
    assert run(daemon, "audit", "--since", "1h", "--limit", "1") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["ID", "TS", "USER", "ROLE", "COMMAND"]
    assert len(lines) == 2 and '"level":"warning"' in lines[1] and "root" in lines[1]
    assert run(daemon, "--json", "audit", "--command", "log-level") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["args"]["level"] for r in rows] == ["info", "warning"]
    assert run(daemon, "audit", "--since", "last tuesday") == 1
    assert "promodctl: invalid_args: since:" in capsys.readouterr().err
    assert run(daemon, "audit", "--limit", "many") == 2


def test_ping_version_help(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(daemon, "ping") == 0
    assert capsys.readouterr().out.strip() == "pong (root, admin)"
    assert run(daemon, "version") == 0
    assert capsys.readouterr().out.startswith(f"promod {daemon.app.version}")
    assert run(daemon, "help") == 0
    listing = capsys.readouterr().out
    assert "log-level" in listing and "read the audit log" in listing
    assert run(daemon, "help", "audit") == 0
    described = capsys.readouterr().out
    assert described.startswith("usage: audit [--since") and "since" in described
    assert run(daemon, "help", "nope") == 1
    assert capsys.readouterr().err.startswith("promodctl: not_found:")


def test_call_runs_any_command(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(daemon, "--json", "call", "ping") == 0
    assert json.loads(capsys.readouterr().out)["pong"] is True
    assert run(daemon, "--json", "call", "audit", '{"limit": 3}') == 0
    assert json.loads(capsys.readouterr().out) == []
    assert run(daemon, "call", "audit", "{not json") == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert run(daemon, "call", "audit", "[1]") == 2
    assert "must be a JSON object" in capsys.readouterr().err
    assert run(daemon, "call", "campaign.nope") == 1
    assert capsys.readouterr().err.startswith("promodctl: unknown_command:")
    assert run(daemon, "call", "audit", '{"limit": "3"}') == 1
    assert "promodctl: invalid_args:" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["--timeout", "0", "--socket", "/nonexistent/x.sock", "ping"]) == 2
    assert main(["--help"]) == 0
    assert "exit status" in capsys.readouterr().out


def test_unreachable_daemon_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--socket", "/nonexistent/promod/admin.sock", "status"]) == 3
    assert capsys.readouterr().err.startswith("promodctl: daemon unreachable: cannot connect")


def test_silent_daemon_times_out_with_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    sock_dir = Path(tempfile.mkdtemp(prefix="pm"))
    path = sock_dir / "mute.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        assert main(["--socket", str(path), "--timeout", "0.2", "ping"]) == 3
    assert "no answer" in capsys.readouterr().err
    path.unlink()
    sock_dir.rmdir()


def test_socket_from_environment_and_config(
    daemon: Daemon,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PROMOD_SOCKET", str(daemon.socket))
    assert main(["ping"]) == 0
    monkeypatch.delenv("PROMOD_SOCKET")
    config = daemon.socket.parent / "promod.toml"
    config.write_text('[daemon]\nadmin_socket = "admin.sock"\n')
    assert main(["--config", str(config), "ping"]) == 0
    monkeypatch.setenv("PROMOD_CONFIG", str(config))
    assert main(["ping"]) == 0
    assert capsys.readouterr().out.count("pong") == 3


def test_resolve_socket_precedence(tmp_path: Path) -> None:
    config = tmp_path / "promod.toml"
    config.write_text('[daemon]\nadmin_socket = "run/admin.sock"\n')
    env = {"PROMOD_SOCKET": "/env.sock", "PROMOD_CONFIG": str(config)}
    assert resolve_socket("/opt.sock", str(config), env) == Path("/opt.sock")
    assert resolve_socket(None, str(config), env) == Path("/env.sock")
    assert resolve_socket(None, str(config), {}) == tmp_path / "run" / "admin.sock"
    assert resolve_socket(None, None, {"PROMOD_CONFIG": str(config)}) == (
        tmp_path / "run" / "admin.sock"
    )
    assert resolve_socket(None, None, {"PROMOD_CONFIG": "/nonexistent.toml"}) == DEFAULT_SOCKET
    assert resolve_socket(None, None, {}) == DEFAULT_SOCKET
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert resolve_socket(None, str(empty), {}) == DEFAULT_SOCKET
    with pytest.raises(UsageError):
        resolve_socket(None, "/nonexistent.toml", {})


@command(
    "demo.pause",
    role=Role.OPERATOR,
    mutating=True,
    summary="pause",
    args={"campaign": ArgSpec(str, required=True), "reason": ArgSpec(str)},
)
async def campaign_pause(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    return {"paused": args["campaign"], "reason": args.get("reason")}


def test_a_new_subcommand_is_one_table_row(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    row = CtlCommand(
        "demo pause",
        "pause a running campaign",
        params=(param("campaign"), param("--reason")),
    )
    assert row.command == "demo.pause"
    ns = build_parser([*ctl.COMMANDS, row]).parse_args(["demo", "pause", "w-30", "--reason", "x"])
    assert ns.ctl_command is row
    assert row.request_args(ns) == {"campaign": "w-30", "reason": "x"}

    daemon.app.commands.register(campaign_pause)
    monkeypatch.setattr(ctl, "COMMANDS", (*ctl.COMMANDS, row))
    assert run(daemon, "--json", "demo", "pause", "winback-30d") == 0
    assert json.loads(capsys.readouterr().out) == {"paused": "winback-30d", "reason": None}
    assert run(daemon, "demo") == 2
    assert [r["command"] for r in daemon.audit()] == ["demo.pause"]


def test_json_is_accepted_anywhere_on_the_line(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    for argv in (
        ["--json", "campaign", "report", "X"],
        ["campaign", "report", "X", "--json"],
        ["campaign", "--json", "report", "X", "--csv"],
    ):
        assert parser.parse_args(argv).json is True, argv
    assert parser.parse_args(["campaign", "report", "X"]).json is False
    assert run(daemon, "audit", "--json", "--limit", "5") == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)
    assert run(daemon, "status", "--json") == 0
    assert json.loads(capsys.readouterr().out)["version"] == daemon.app.version


def test_times_print_as_iso_8601_in_the_sites_time_zone(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    config = daemon.app.config
    berlin = config.daemon.model_copy(update={"timezone": "Europe/Berlin"})
    daemon.app.config = config.model_copy(update={"daemon": berlin})
    daemon.app.started_at = 1796160499.39  # 2026-12-01 21:28:19 UTC
    try:
        assert run(daemon, "status") == 0
        out = capsys.readouterr().out
        assert "started_at:    2026-12-01T22:28:19+01:00" in out
        assert "1796160499" not in out
        assert run(daemon, "--json", "status") == 0  # JSON keeps the daemon's Unix time
        assert json.loads(capsys.readouterr().out)["started_at"] == 1796160499.39
    finally:
        set_site_timezone(None)


def test_launch_and_show_print_times_not_epoch_floats() -> None:
    row = {
        "id": "winback",
        "name": "Win back",
        "kind": "past_behavior",
        "state": "running",
        "version": 1,
        "next_run_at": 1796160499.3957877,
        "paused_reason": None,
        "paused_until": 1796164099.0,
        "pilot": None,
        "created_at": 1796160498.7457378,
        "updated_at": 1796160499.3957877,
        "launched_at": 1796160499.3957877,
    }
    launch = next(c for c in ctl.COMMANDS if c.words == "campaign launch")
    show = next(c for c in ctl.COMMANDS if c.words == "campaign show")
    set_site_timezone("Europe/Berlin")
    try:
        launched = launch.render(row)
        shown = show.render({**row, "summary": {"timezone": "Europe/Berlin"}})
    finally:
        set_site_timezone(None)
    for text in (launched, shown):
        assert "1796160" not in text
        assert re.search(r"next_run_at: +2026-12-01T22:28:19\+01:00", text), text
        assert re.search(r"paused_until: +2026-12-01T23:28:19\+01:00", text), text
        assert re.search(r"launched_at: +2026-12-01T22:28:19\+01:00", text), text
    assert re.search(r"created_at: +2026-12-01T22:28:18\+01:00", launched)
    assert format_timestamp(1796160499.39) == "2026-12-01T21:28:19Z"  # UTC by default


def test_output_into_a_closed_pipe_ends_quietly_with_exit_0(daemon: Daemon) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has already gone: every write fails with EPIPE
    try:
        for argv in (["--json", "help"], ["help"], ["status"], ["--help"]):
            done = subprocess.run(
                [sys.executable, "-m", "promod.ctl.main", "--socket", str(daemon.socket), *argv],
                stdout=write_end,
                stderr=subprocess.PIPE,
                text=True,
                timeout=30,
            )
            assert (done.returncode, done.stderr) == (0, ""), argv
    finally:
        os.close(write_end)
