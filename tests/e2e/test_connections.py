"""Too many connections and slow clients against the daemon under a low descriptor limit."""

from __future__ import annotations

import errno
import os
import resource
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.daemon import Daemon, wait_until

pytestmark = pytest.mark.slow

LOW = 256  # descriptors the daemon gets (soft and hard: it cannot raise them)
FLOOD = 600  # half-open HTTP connections, far more than LOW


def limit_nofile(soft: int, hard: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def start_limited(daemon_factory: Any, soft: int, hard: int, **edits: str) -> Daemon:
    d: Daemon = daemon_factory(start=False, edits=edits or None)
    d.preexec = limit_nofile(soft, hard)
    d.start()
    return d


def http_address(d: Daemon) -> tuple[str, int]:
    host, port = d.call("status")["http"].rsplit(":", 1)
    return host, int(port)


def healthz(d: Daemon, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(f"{d.http_url}/healthz", timeout=timeout) as res:
            return int(res.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def open_half_open(address: tuple[str, int], n: int) -> list[socket.socket]:
    """``n`` TCP connections that never send a byte."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex(address)
        assert err in (0, errno.EINPROGRESS), os.strerror(err)
        socks.append(s)
    return socks


def closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset: closed too
        return True


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one(daemon_factory: Any) -> None:
    d = start_limited(daemon_factory, 256, 4096)
    assert d.proc is not None
    limits = d.call("status")["limits"]
    assert limits["nofile"] == 4096
    assert resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE) == (4096, 4096)
    # Shared out below the limit, with a reserve.
    total = limits["http_connections"] + limits["admin_connections"] + limits["accept_backlog"]
    assert total + limits["reserve"] <= 4096


def test_a_flood_of_half_open_connections_leaves_the_kill_switch_reachable(
    daemon_factory: Any,
) -> None:
    d = start_limited(
        daemon_factory, LOW, LOW, **{r"^request_timeout = .*": 'request_timeout = "3s"'}
    )
    assert d.proc is not None
    limits = d.call("status")["limits"]
    assert limits["nofile"] == LOW
    flood = open_half_open(http_address(d), FLOOD)
    try:
        # The HTTP share fills up (and no more: the rest are closed at once or wait in
        # the kernel), while the descriptor table keeps room.
        wait_until(
            lambda: open_fds(d.proc.pid) >= limits["http_connections"] // 2,  # type: ignore[union-attr]
            timeout=10,
            what="the flood to reach the daemon",
        )
        assert open_fds(d.proc.pid) < LOW - 16
        # The operator still reaches the admin socket and the kill switch.
        started = time.monotonic()
        kill = d.ctl("kill", timeout=20)
        assert kill.returncode == 0, kill.stderr
        assert time.monotonic() - started < 10
        assert d.call("kill.status")["engaged"] is True
        assert open_fds(d.proc.pid) < LOW - 16
        assert d.running
        # The silent ones are closed after request_timeout: /healthz answers again
        # while the flood's sockets are still open on the client's side.
        held = open_fds(d.proc.pid)
        wait_until(
            lambda: open_fds(d.proc.pid) < held - limits["http_connections"] // 2,  # type: ignore[union-attr]
            timeout=20,
            what="silent connections to time out",
        )
        wait_until(lambda: healthz(d) == 200, timeout=10, what="/healthz during the flood")
        assert sum(closed_by_peer(s) for s in flood) >= limits["http_connections"] // 2
    finally:
        for s in flood:
            s.close()
    log = d.logs()
    assert log.count("Too many open files") <= 2
    assert log.count("out of system resource") <= 2
    assert d.stop() == 0


def test_slow_clients_are_closed_after_the_request_timeout(daemon_factory: Any) -> None:
    d = start_limited(
        daemon_factory, 1024, 1024, **{r"^request_timeout = .*": 'request_timeout = "2s"'}
    )
    address = http_address(d)
    slow = []
    for _ in range(20):
        s = socket.create_connection(address, timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: promod\r\n")
        s.setblocking(False)
        slow.append(s)
    opened = time.monotonic()
    deadline = opened + 15
    closed_at: dict[int, float] = {}
    while len(closed_at) < len(slow) and time.monotonic() < deadline:
        for i, s in enumerate(slow):
            if i in closed_at:
                continue
            try:
                s.sendall(b"X-Slow: 1\r\n")  # a header line now and then, never the end
            except OSError:
                closed_at[i] = time.monotonic()
                continue
            if closed_by_peer(s):
                closed_at[i] = time.monotonic()
        time.sleep(0.25)
    for s in slow:
        s.close()
    assert len(closed_at) == len(slow), "slow clients kept their connections"
    assert min(closed_at.values()) - opened >= 1.5  # closed for being slow, not at once
    # A client that sends its request in time is served on the same kind of connection.
    with socket.create_connection(address, timeout=5) as ok:
        ok.sendall(b"GET /healthz HTTP/1.1\r\nHost: promod\r\n\r\n")
        assert ok.recv(64).startswith(b"HTTP/1.1 200")
    assert d.stop() == 0
