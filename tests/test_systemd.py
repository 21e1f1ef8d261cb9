"""Tests for promod.systemd: a real AF_UNIX datagram listener plays the service manager."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from promod.systemd import Notifier


class Listener:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address

    def receive(self) -> list[str]:
        data = self.sock.recv(65536)
        return data.decode("utf-8").split("\n")

    def assert_nothing_received(self) -> None:
        self.sock.setblocking(False)
        try:
            with pytest.raises(BlockingIOError):
                self.sock.recv(65536)
        finally:
            self.sock.setblocking(True)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="promod-sd-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def path_listener(short_dir: Path) -> Iterator[Listener]:
    path = short_dir / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    try:
        yield Listener(sock, str(path))
    finally:
        sock.close()


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    name = f"promod-test-{secrets.token_hex(8)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        yield Listener(sock, "@" + name)
    finally:
        sock.close()


@pytest.fixture(params=["path", "abstract"])
def listener(
    request: pytest.FixtureRequest, path_listener: Listener, abstract_listener: Listener
) -> Listener:
    return path_listener if request.param == "path" else abstract_listener


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_ready_reaches_a_path_socket_and_an_abstract_socket(listener: Listener) -> None:
    with Notifier(listener.address) as notifier:
        assert notifier.enabled
        assert notifier.ready() is True
        assert listener.receive() == ["READY=1"]


def test_from_env_reads_notify_socket_and_drops_it_from_the_environment(
    clean_env: pytest.MonkeyPatch, abstract_listener: Listener
) -> None:
    clean_env.setenv("NOTIFY_SOCKET", abstract_listener.address)
    notifier = Notifier.from_env()
    assert "NOTIFY_SOCKET" not in os.environ
    assert notifier.address == abstract_listener.address
    notifier.ready()
    assert abstract_listener.receive() == ["READY=1"]
    notifier.close()


def test_child_processes_do_not_inherit_notify_socket(
    clean_env: pytest.MonkeyPatch, path_listener: Listener
) -> None:
    clean_env.setenv("NOTIFY_SOCKET", path_listener.address)
    with Notifier.from_env():
        out = subprocess.run(
            [sys.executable, "-c", "import os; print(os.environ.get('NOTIFY_SOCKET'))"],
            capture_output=True,
            text=True,
            check=True,
        )
    assert out.stdout.strip() == "None"


def test_from_env_uses_and_empties_a_given_mapping(path_listener: Listener) -> None:
    env = {"NOTIFY_SOCKET": path_listener.address, "PATH": "/usr/bin"}
    with Notifier.from_env(env) as notifier:
        assert env == {"PATH": "/usr/bin"}
        notifier.stopping()
        assert path_listener.receive() == ["STOPPING=1"]


def test_without_notify_socket_every_call_is_a_no_op(clean_env: pytest.MonkeyPatch) -> None:
    notifier = Notifier.from_env()
    assert not notifier.enabled
    assert notifier.address is None
    assert notifier.ready() is False
    assert notifier.stopping() is False
    assert notifier.reloading() is False
    assert notifier.status("idle") is False
    assert notifier.watchdog_ping() is False
    assert notifier.extend_timeout(10) is False
    assert notifier.watchdog_period() is None


def test_an_unsupported_address_gives_a_disabled_notifier(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    notifier = Notifier.from_env()
    assert not notifier.enabled
    assert notifier.address == "vsock:2:1234"
    assert notifier.ready() is False
    assert "NOTIFY_SOCKET" not in os.environ
    with pytest.raises(ValueError, match="unsupported"):
        Notifier("relative/path")


def test_ready_and_stopping_carry_an_optional_status(listener: Listener) -> None:
    with Notifier(listener.address) as notifier:
        notifier.ready(status="serving 6 actors")
        assert listener.receive() == ["READY=1", "STATUS=serving 6 actors"]
        notifier.stopping(status="draining")
        assert listener.receive() == ["STOPPING=1", "STATUS=draining"]


def test_status_text_stays_one_assignment(listener: Listener) -> None:
    with Notifier(listener.address) as notifier:
        notifier.status("line one\nREADY=1\r\nline three")
        assert listener.receive() == ["STATUS=line one READY=1 line three"]


def test_reloading_sends_the_monotonic_time(listener: Listener) -> None:
    with Notifier(listener.address) as notifier:
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notifier.reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        first, second = listener.receive()
        assert first == "RELOADING=1"
        key, _, value = second.partition("=")
        assert key == "MONOTONIC_USEC"
        assert before <= int(value) <= after


def test_watchdog_ping_trigger_and_extend_timeout(listener: Listener) -> None:
    with Notifier(listener.address) as notifier:
        notifier.watchdog_ping()
        assert listener.receive() == ["WATCHDOG=1"]
        notifier.watchdog_trigger()
        assert listener.receive() == ["WATCHDOG=trigger"]
        notifier.extend_timeout(12.5)
        assert listener.receive() == ["EXTEND_TIMEOUT_USEC=12500000"]
        notifier.main_pid()
        assert listener.receive() == [f"MAINPID={os.getpid()}"]
        with pytest.raises(ValueError):
            notifier.extend_timeout(-1)


def test_notify_sends_several_assignments_in_one_datagram(listener: Listener) -> None:
    with Notifier(listener.address) as notifier:
        assert notifier.notify("READY=1", "STATUS=up") is True
        assert listener.receive() == ["READY=1", "STATUS=up"]
        assert notifier.notify() is False
        listener.assert_nothing_received()


def test_a_vanished_manager_does_not_raise(short_dir: Path) -> None:
    path = short_dir / "gone"
    with Notifier(str(path)) as notifier:
        assert notifier.enabled
        assert notifier.ready() is False
        assert notifier.watchdog_ping() is False


def test_closed_notifier_sends_nothing(path_listener: Listener) -> None:
    notifier = Notifier(path_listener.address)
    notifier.close()
    notifier.close()
    assert not notifier.enabled
    assert notifier.ready() is False
    path_listener.assert_nothing_received()


def test_watchdog_period_from_watchdog_usec_for_this_process(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("WATCHDOG_USEC", "30000000")
    clean_env.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_env()
    assert notifier.watchdog_period() == 30.0
    assert "WATCHDOG_USEC" not in os.environ
    assert "WATCHDOG_PID" not in os.environ


def test_watchdog_period_without_watchdog_pid(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WATCHDOG_USEC", "500000")
    assert Notifier.from_env().watchdog_period() == 0.5


@pytest.mark.parametrize(
    ("usec", "pid"),
    [
        ("30000000", "other"),  # meant for another process
        ("0", None),
        ("-5", None),
        ("soon", None),
        ("30000000", "not-a-pid"),
    ],
)
def test_watchdog_period_is_none_when_not_meant_for_us(
    clean_env: pytest.MonkeyPatch, usec: str, pid: str | None
) -> None:
    clean_env.setenv("WATCHDOG_USEC", usec)
    if pid == "other":
        pid = str(os.getpid() + 1)
    if pid is not None:
        clean_env.setenv("WATCHDOG_PID", pid)
    assert Notifier.from_env().watchdog_period() is None


def test_watchdog_period_given_directly() -> None:
    assert Notifier(None, watchdog_usec=20_000_000).watchdog_period() == 20.0
    assert Notifier(None, watchdog_usec=0).watchdog_period() is None
