"""The daemon as a subprocess: readiness, status, signals, supervision, roles, plugins."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from promod.config import load_config
from tests.support.daemon import Daemon, _script, init_instance, new_instance_dir, wait_until

HERE = Path(__file__).parent
ACTORS = {
    "scheduler",
    "clearance",
    "ledger",
    "codepool",
    "notifier",
    "live",
    "crmsync",
    "tagger",
}

pytestmark = pytest.mark.slow


def _children(d: Daemon) -> dict[str, dict]:
    status = d.ctl_json("status")
    return {c["name"]: c for c in status["actors"]}


def test_ready_status_and_clean_stop(daemon_factory) -> None:
    d = daemon_factory()
    children = _children(d)
    assert ACTORS <= set(children)
    assert {"admin", "http"} <= set(children)
    assert all(children[name]["state"] == "running" for name in ACTORS)
    assert os.stat(d.socket).st_mode & 0o777 == 0o660

    human = d.ctl("status")
    assert human.returncode == 0
    for name in ACTORS:
        assert name in human.stdout

    started = time.monotonic()
    assert d.stop(timeout=5) == 0
    assert time.monotonic() - started < 5
    assert d.notify is not None
    d.notify.wait_for("STOPPING=1", timeout=1)
    assert not d.socket.exists()


def test_crashed_actor_is_restarted_and_counted(daemon_factory) -> None:
    d = daemon_factory(edits={r"^dirs = \[\]": f'dirs = ["{HERE / "plugins"}"]'})
    assert d.ctl_json("call", "test.crash", '{"actor": "scheduler"}') == {"told": "scheduler"}
    wait_until(
        lambda: (
            (_children(d)["scheduler"]["restarts"], _children(d)["scheduler"]["state"])
            == (1, "running")
        ),
        timeout=5,
        what="the scheduler's restart",
    )
    assert _children(d)["ledger"]["restarts"] == 0  # one_for_one
    # The restart is an event for the notifier to route per [alerts].
    db = d.root / "state" / "promod.db"

    def restarted() -> list[tuple[str]]:
        with sqlite3.connect(db) as conn:
            return conn.execute(
                "SELECT json_extract(payload, '$.actor') FROM outbox WHERE type = 'actor.restarted'"
            ).fetchall()

    assert wait_until(restarted, timeout=5, what="the actor.restarted event") == [("scheduler",)]


def test_restart_storm_exits_non_zero(daemon_factory) -> None:
    d = daemon_factory(
        edits={
            r"^dirs = \[\]": f'dirs = ["{HERE / "plugins"}"]',
            r"^max_restarts = \d+": "max_restarts = 2",
        }
    )
    for _ in range(10):
        if d.proc is not None and d.proc.poll() is not None:
            break
        try:
            d.request("test.crash", {"actor": "ledger"}, timeout=2)
        except (OSError, ValueError):  # the daemon went away mid-answer
            break
        time.sleep(0.3)
    code = d.wait(timeout=10)
    assert code == 70, d.logs()
    assert "supervisor_gave_up" in d.logs()


def test_viewer_is_refused_a_mutating_command_and_it_is_audited(daemon_factory) -> None:
    d = daemon_factory(start=False)
    text = d.config_path.read_text()
    # Map this user (root in CI, whoever runs the tests elsewhere) to viewer only.
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    start = text.index("[admin.roles]")
    end = text.index("\n[", start + 1)
    d.config_path.write_text(
        text[:start] + f'[admin.roles]\nviewer = {{ users = ["{me}"] }}\n' + text[end:]
    )
    d.start()
    assert d.ctl("status").returncode == 0
    res = d.ctl("log-level", "debug")
    assert res.returncode == 1
    assert "forbidden" in res.stderr
    rows = d.ctl_json("audit")
    refused = [r for r in rows if r["command"] == "log-level"]
    assert refused and refused[-1]["outcome"] == "refused"
    assert refused[-1]["user"] == me
    db = d.root / "state" / "promod.db"
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM audit_log WHERE command = 'log-level' AND outcome = 'refused'"
        ).fetchone()
    assert n == 1


def test_config_with_three_errors_reports_all_and_exits_1() -> None:
    root = new_instance_dir()
    init_instance(root)
    cfg = root / "promod.toml"
    text = cfg.read_text()
    text = text.replace("[supervisor]\n", "[supervisor]\nmax_restart = 5\n", 1)
    text = text.replace('level = "info"', 'level = "loud"', 1)
    text = text.replace('shutdown_timeout = "30s"', 'shutdown_timeout = "30 seconds"', 1)
    cfg.write_text(text)
    for cmd in (["check-config"], ["run"]):
        res = subprocess.run(
            [*_script("promod"), *cmd, "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert res.returncode == 1, res
        for path in ("supervisor.max_restart", "log.level", "daemon.shutdown_timeout"):
            assert path in res.stderr, res.stderr
    assert not (root / "state" / "promod.db").exists()  # nothing was touched


def test_sighup_with_broken_config_keeps_running_on_the_old_one(daemon_factory) -> None:
    d = daemon_factory()
    good = d.config_path.read_text()
    d.config_path.write_text(good.replace("[supervisor]\n", "[supervisor]\nbogus = 1\n", 1))
    d.signal(signal.SIGHUP)
    wait_until(lambda: "config_reload_rejected" in d.logs(), timeout=5, what="the rejection")
    assert "supervisor.bogus" in d.logs()
    assert d.ctl_json("status")["reloads"] == 0
    assert d.ctl_json("log-level")["level"] == "info"

    d.config_path.write_text(good.replace('level = "info"', 'level = "debug"', 1))
    d.signal(signal.SIGHUP)
    wait_until(lambda: d.ctl_json("status")["reloads"] == 1, timeout=5, what="the reload")
    assert d.ctl_json("log-level")["level"] == "debug"
    assert d.stop() == 0


def _entry_point_site(root: Path) -> Path:
    """A distribution with a ``promod`` entry point, installed on a path of its own."""
    site = root / "site"
    dist = site / "promod_hello-1.2.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: promod-hello\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[promod]\nhello = promod_hello\n")
    (site / "promod_hello.py").write_text(
        '"""Entry-point plugin."""\n'
        "from promod import hookimpl\n\n"
        "@hookimpl\n"
        "def promod_startup(app):\n"
        "    app.plugin_state['hello'] = True\n"
    )
    return site


def test_plugins_from_entry_point_and_dir_are_listed(daemon_factory) -> None:
    root = new_instance_dir()
    site = _entry_point_site(root)
    d = daemon_factory(
        edits={r"^dirs = \[\]": f'dirs = ["{HERE / "plugins"}"]'},
        env={"PYTHONPATH": str(site)},
    )
    plugins = {p["name"]: p for p in d.ctl_json("plugins")}
    assert plugins["hello"]["source"] == "entrypoint"
    assert plugins["hello"]["version"] == "1.2.3"
    assert "promod_startup" in plugins["hello"]["hooks"]
    assert plugins["crashy"]["source"] == "dir"
    assert "command:test.crash" in plugins["crashy"]["registers"]
    human = d.ctl("plugins")
    assert "hello" in human.stdout and "crashy" in human.stdout


def test_misspelled_hook_is_refused_at_start(daemon_factory) -> None:
    root = new_instance_dir()
    pdir = root / "plugins"
    pdir.mkdir()
    (pdir / "misspelled.py").write_text((HERE / "plugins" / "misspelled.py.txt").read_text())
    d = daemon_factory(start=False, edits={r"^dirs = \[\]": f'dirs = ["{pdir}"]'})
    d.start(wait_ready=False)
    assert d.wait(timeout=20) == 1
    assert "promod_register_chanels" in d.logs()


def test_check_config_on_deeply_nested_toml_is_a_clean_error() -> None:
    root = new_instance_dir()
    cfg = root / "deep.toml"
    depth = 100_000
    cfg.write_text("x = " + "[" * depth + "]" * depth + "\n")
    res = subprocess.run(
        [*_script("promod"), "check-config", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1, res
    assert "nested too deeply" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert "RecursionError" not in res.stderr + res.stdout


def test_trace_switch_writes_each_hook_call_to_the_daemon_log(daemon_factory) -> None:
    d = daemon_factory(env={"PROMOD_TRACE_PLUGINS": "1"})
    secret = load_config(d.config_path).channels["backend"].options["secret"]
    traces = [e["trace"] for e in d.log_events() if e.get("event") == "plugin_trace"]
    assert any(t.strip() == "promod_register_commands [hook]" for t in traces)
    assert any(t.strip() == "promod_startup [hook]" for t in traces)
    assert any(t.strip().startswith("calls: promod.builtin.") for t in traces)
    assert d.ctl("status").returncode == 0
    assert d.stop() == 0
    assert any(e.get("trace", "").strip() == "promod_shutdown [hook]" for e in d.log_events())
    assert secret not in d.logs()


def test_db_backup_of_a_running_daemon_is_not_world_readable(daemon_factory) -> None:
    d = daemon_factory()
    state_dir = d.root / "state"
    dest = d.root / "backups" / "promod.db"
    old_umask = os.umask(0o022)  # the usual umask would make a plain new file 0644
    try:
        res = subprocess.run(
            [*_script("promod"), "db", "backup", str(dest), "--config", str(d.config_path)],
            capture_output=True,
            text=True,
        )
    finally:
        os.umask(old_umask)
    assert res.returncode == 0, res.stderr
    info = dest.stat()
    assert info.st_mode & 0o007 == 0, oct(info.st_mode)
    # promod init makes the state directory 0750: the backup is for that group.
    assert state_dir.stat().st_mode & 0o777 == 0o750
    assert info.st_mode & 0o777 == 0o640
    assert info.st_gid == state_dir.stat().st_gid
    with sqlite3.connect(dest) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_sigterm_the_instant_ready_arrives_drains_and_exits_0(daemon_factory) -> None:
    """READY=1 is sent only once SIGTERM is handled: a stop right after it is clean."""
    d = daemon_factory(start=False)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PROMOD_CONFIG", None)
    for attempt in range(10):
        path = d.root / f"ready{attempt}.sock"
        log_path = d.root / f"run{attempt}.log"
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify,
            log_path.open("wb") as log,
        ):
            notify.bind(str(path))
            notify.settimeout(30)
            proc = subprocess.Popen(
                [*_script("promod"), "run", "--config", str(d.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**env, "NOTIFY_SOCKET": str(path)},
                cwd=d.root,
            )
            try:
                while b"READY=1" not in notify.recv(65536).split(b"\n"):
                    pass
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        logs = log_path.read_text(errors="replace")
        assert code == 0, f"attempt {attempt}: exit {code}\n{logs}"
        assert '"stopping"' in logs
