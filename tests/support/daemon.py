"""End-to-end support: a promod daemon started as a subprocess from ``promod init``.

def test_something(daemon_factory):
    d = daemon_factory()                       # init, start, wait for READY=1
    assert d.ctl("status").returncode == 0
    assert d.stop() == 0                       # SIGTERM
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from promod.testing import NotifyListener

BIN = Path(sys.executable).parent


def _script(name: str) -> list[str]:
    exe = BIN / name
    if exe.exists():
        return [str(exe)]
    module = {"promod": "promod", "promodctl": "promod.ctl.main"}[name]
    return [sys.executable, "-m", module]


class Daemon:
    """One daemon instance: its directory, config, process and notify listener."""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.config_path = root / "promod.toml"
        self.socket = root / "admin.sock"
        self.log_path = root / "daemon.log"
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify: NotifyListener | None = None
        self.starts = 0

    # -- config ---------------------------------------------------------------
    def edit_config(self, replacements: dict[str, str]) -> None:
        """Replace ``key = value`` lines (first match of each regex key) in promod.toml."""
        text = self.config_path.read_text()
        for pattern, new in replacements.items():
            text, n = re.subn(pattern, new, text, count=1, flags=re.MULTILINE)
            if n != 1:
                raise AssertionError(f"pattern {pattern!r} not found in the config")
        self.config_path.write_text(text)

    def append_config(self, text: str) -> None:
        with self.config_path.open("a") as fh:
            fh.write("\n" + text + "\n")

    # -- process --------------------------------------------------------------
    def start(self, wait_ready: bool = True, timeout: float = 20.0) -> Daemon:
        if self.notify is not None:
            self.notify.close()
        notify_path = self.root / f"notify{self.starts}.sock"
        self.notify = NotifyListener(notify_path)
        env = {**os.environ, **self.env, "NOTIFY_SOCKET": str(notify_path), "PYTHONUNBUFFERED": "1"}
        env.pop("PROMOD_CONFIG", None)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*_script("promod"), "run", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.root,
        )
        log.close()
        self.starts += 1
        if wait_ready:
            try:
                self.notify.wait_for("READY=1", timeout=timeout)
            except AssertionError:
                self.kill()
                raise AssertionError("daemon did not become ready:\n" + self.logs()) from None
        return self

    def wait(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    # -- admin socket -----------------------------------------------------------
    def ctl(
        self, *args: str, timeout: float = 60.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``promodctl --socket ... ARGS`` as a subprocess."""
        return subprocess.run(
            [*_script("promodctl"), "--socket", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )

    def ctl_json(self, *args: str, timeout: float = 60.0) -> Any:
        res = self.ctl("--json", *args, timeout=timeout)
        if res.returncode != 0:
            raise AssertionError(
                f"promodctl {args} exited {res.returncode}: {res.stderr}{res.stdout}"
            )
        return json.loads(res.stdout)

    def call(
        self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """One raw request on the admin socket; the whole response."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.socket))
            s.sendall(json.dumps({"id": 1, "cmd": cmd, "args": args or {}}).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return json.loads(buf)

    def close(self) -> None:
        self.kill()
        if self.notify is not None:
            self.notify.close()


def wait_until(predicate: Callable[[], Any], *, timeout: float = 30.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or 'a condition'}")


def new_instance_dir() -> Path:
    """A short directory (AF_UNIX paths are limited to 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="pm", dir="/tmp"))


def init_instance(root: Path) -> None:
    res = subprocess.run([*_script("promod"), "init", str(root)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.fixture
def daemon_factory() -> Iterator[Callable[..., Daemon]]:
    """Make daemons from fresh ``promod init`` directories; every one is killed at the end."""
    made: list[Daemon] = []

    def make(
        *,
        start: bool = True,
        edits: dict[str, str] | None = None,
        append: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Daemon:
        root = new_instance_dir()
        init_instance(root)
        d = Daemon(root, env=env)
        made.append(d)
        # Tests never collide on ports: the HTTP API binds an ephemeral one.
        d.edit_config({r'^listen = "127\.0\.0\.1:8470"': 'listen = "127.0.0.1:0"'})
        if edits:
            d.edit_config(edits)
        if append:
            d.append_config(append)
        if start:
            d.start()
        return d

    yield make
    for d in made:
        d.close()
        shutil.rmtree(d.root, ignore_errors=True)
