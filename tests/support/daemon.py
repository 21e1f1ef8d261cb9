"""End-to-end support: a promod daemon started as a subprocess from ``promod init``.

def test_something(daemon_factory):
    d = daemon_factory()                   # init, start, wait for READY=1
    assert d.ctl("status").returncode == 0
    assert d.stop() == 0                   # SIGTERM
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from promod.initdir import init_directory
from promod.testing import NotifyListener, PromodDaemon, wait_until

__all__ = ["Daemon", "daemon_factory", "init_instance", "new_instance_dir", "wait_until"]

BIN = Path(sys.executable).parent


def _script(name: str) -> list[str]:
    exe = BIN / name
    if exe.exists():
        return [str(exe)]
    module = {"promod": "promod", "promodctl": "promod.ctl.main"}[name]
    return [sys.executable, "-m", module]


class Daemon(PromodDaemon):
    """``promod.testing.PromodDaemon`` plus what the suite's own tests need."""

    @property
    def notify(self) -> NotifyListener | None:
        return self._notify

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
    def start(self, timeout: float = 20.0, *, wait_ready: bool = True) -> Daemon:
        self.spawn()
        if wait_ready:
            try:
                self.wait_ready(timeout)
            except RuntimeError as exc:
                raise AssertionError(f"daemon did not become ready: {exc}") from None
        return self

    def wait(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    # -- admin socket -----------------------------------------------------------
    def ctl_json(self, *args: str, timeout: float = 60.0) -> Any:
        res = self.ctl("--json", *args, timeout=timeout)
        if res.returncode != 0:
            raise AssertionError(
                f"promodctl {args} exited {res.returncode}: {res.stderr}{res.stdout}"
            )
        return json.loads(res.stdout)

    def request(
        self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """One raw request on the admin socket; the whole response (``ok``, ``result``...)."""
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
        response: dict[str, Any] = json.loads(buf)
        return response


def new_instance_dir() -> Path:
    """A short directory (AF_UNIX paths are limited to 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="pm", dir="/tmp"))


def init_instance(root: Path) -> None:
    """``promod init ROOT`` as the operator runs it (a subprocess)."""
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
        # What ``promod init`` writes, without a process of its own for each daemon
        # (the command itself: init_instance, tests/e2e/test_campaigns.py --demo).
        init_directory(root)
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
