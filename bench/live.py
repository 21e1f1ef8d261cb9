"""Benchmark: live-action latency, open loop — from each event's arrival to its grant's commit.

Starts a real daemon (``promod init`` + ``promod run``, system clock, WAL with
synchronous=FULL as shipped) in a temporary directory, applies and launches
``--campaigns`` live campaigns (campaign i rewards event ``action{i}`` with
``amount >= i``); every event is for a new customer and matches one campaign, so
every event leads to one grant.

Open loop: for each rate of ``--rates``, event k of a step *arrives* at
``t0 + k / rate`` whatever the daemon does. Every ``--tick`` seconds the sender
posts the events that have arrived since its last post as one ``POST /v1/events``,
without waiting for earlier answers (up to ``--connections`` requests in flight;
a request waiting for a connection keeps its events' arrival times, so a slow
daemon shows as latency, not as a lower offered rate). Latency is measured from
the event's arrival:

- to the grant's commit: a separate poller process reads the database (a WAL
  reader, every ``--poll`` seconds) and stamps each grant when it first sees it,
  so this figure is an upper bound on the commit, by at most the poll interval;
- to ``grants.created_at`` (the ledger's time for the batch, before its commit);
- to the POST's answer (the event is durable then).

Each step waits until every event of it is granted before the next starts. Then
the same steps run against the leanest plain baseline, ``bench/live_baseline.py``
(plain asyncio and sqlite3, the same facts per event, the same durability). Prints,
per server and rate, the rate reached, the server's CPU time per event, p50/p99/max,
the sender's lag behind the schedule (a lagging sender means the figures include
the benchmark's own delay), and the server's peak RSS::

    .venv/bin/python bench/live.py [--rates 2000,5000] [--seconds 5] [--campaigns 50]
                                   [--tick 0.005] [--connections 32] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import anyio
import httpx

BIN = Path(sys.executable).parent

SPEC = """
id = "live-{i}"
name = "Live bench {i}"
kind = "live_action"
timezone = "UTC"
trigger = {{ event = "action{i}", where = {{ amount = {{ gte = "{i}" }} }} }}

[schedule]
start = "now"
delivery = "immediate"

[reward]
provider = "wallet_points"
amount = "10"
"""


def _admin(sock: Path, cmd: str, args: dict[str, Any]) -> Any:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(sock))
        s.sendall(json.dumps({"id": 1, "cmd": cmd, "args": args}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise RuntimeError(f"{cmd}: {reply.get('error')}")
    return reply["result"]


def _start(root: Path, profile: str | None) -> tuple[subprocess.Popen[bytes], Path]:
    subprocess.run([str(BIN / "promod"), "init", str(root)], check=True, capture_output=True)
    config = root / "promod.toml"
    text = config.read_text()
    text = text.replace('listen = "127.0.0.1:8470"', 'listen = "127.0.0.1:0"')
    text = re.sub(r'^level = "info"', 'level = "warning"', text, count=1, flags=re.MULTILINE)
    text = re.sub(r"^frequency = \{[^\n]*\}", "", text, count=1, flags=re.MULTILINE)
    text = re.sub(r"^wallet_points = \{[^\n]*\}", "", text, count=1, flags=re.MULTILINE)
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("PROMOD_CONFIG", "NOTIFY_SOCKET")}
    log = (root / "daemon.log").open("ab")
    command = [str(BIN / "promod"), "run", "--config", str(config)]
    if profile:
        command = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "promod", *command[1:]]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    sock = root / "admin.sock"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if _admin(sock, "status", {}).get("http"):
                return proc, sock
        except (OSError, ValueError, RuntimeError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("daemon did not start:\n" + (root / "daemon.log").read_text())


def _poll(db: str, interval: float, pipe: Connection) -> None:
    """In its own process: stamp every grant (customer id) when a reader first sees it."""
    conn = sqlite3.connect(db, timeout=30)
    seen: dict[str, float] = {}
    last = 0
    while not pipe.poll():
        rows = conn.execute(
            "SELECT id, customer_id FROM grants WHERE id > ? ORDER BY id", (last,)
        ).fetchall()
        at = time.time()
        for grant_id, customer_id in rows:
            seen[customer_id] = at
            last = grant_id
        time.sleep(interval)
    pipe.recv()
    pipe.send(seen)
    conn.close()


class Step:
    """One rate: the events' arrival and answer times, and how late the sender was."""

    def __init__(self, rate: float, first: int, count: int) -> None:
        self.rate = rate
        self.first = first
        self.count = count
        self.t0 = 0.0
        self.answered: dict[int, float] = {}
        self.lag: list[float] = []
        self.elapsed = 0.0
        self.failed = 0  # events of requests that failed (not answered 2xx)
        self.errors: dict[str, int] = {}

    def arrival(self, k: int) -> float:
        return self.t0 + (k - self.first) / self.rate


def _event(k: int, campaigns: int, ts: str) -> dict[str, Any]:
    return {
        "id": f"e{k}",
        "customer_id": f"c{k}",
        "name": f"action{k % campaigns}",
        "ts": ts,
        "properties": {"amount": f"{k % campaigns}.50"},
    }


async def _send(base: str, token: str, step: Step, args: argparse.Namespace) -> None:
    """Post each tick's arrivals on schedule, never waiting for earlier answers."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=args.connections, max_keepalive_connections=64)
    async with (
        httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits) as client,
        anyio.create_task_group() as tg,
    ):

        async def post(ks: range, body: bytes) -> None:
            try:
                r = await client.post("/v1/events", content=body)
                r.raise_for_status()
            except httpx.HTTPError as exc:  # an overloaded server drops connections
                step.failed += len(ks)
                step.errors[type(exc).__name__] = step.errors.get(type(exc).__name__, 0) + 1
                return
            at = time.time()
            for k in ks:
                step.answered[k] = at

        end = step.first + step.count
        step.t0 = time.time() + 0.05
        sent = step.first
        tick = 0
        while sent < end:
            tick += 1
            await anyio.sleep(max(0.0, step.t0 + tick * args.tick - time.time()))
            now = time.time()
            due = min(end, step.first + int((now - step.t0) * step.rate) + 1)
            if due <= sent:
                continue
            ks = range(sent, due)
            step.lag.append(now - step.arrival(due - 1))
            ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
            body = json.dumps({"events": [_event(k, args.campaigns, ts) for k in ks]}).encode()
            tg.start_soon(post, ks, body)
            sent = due
    step.elapsed = time.time() - step.t0


def _q(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def _line(label: str, values: list[float]) -> str:
    return (
        f"    {label:<28} p50 {_q(values, 0.5):7.1f} ms  p99 {_q(values, 0.99):7.1f} ms"
        f"  max {_q(values, 1.0):7.1f} ms"
    )


def _peak_rss(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return f"{int(line.split()[1]) / 1024:.0f} MB"
    except OSError:
        pass
    return "unknown"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_granted(db: Path, total: int, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    granted = 0
    while time.monotonic() < deadline:
        with sqlite3.connect(db, timeout=30) as conn:
            (granted,) = conn.execute("SELECT count(*) FROM grants").fetchone()
        if granted >= total:
            break
        time.sleep(0.1)
    return int(granted)


def _measure(
    label: str, base: str, token: str, db: Path, pid: int, args: argparse.Namespace
) -> None:
    """Every rate of ``args.rates`` against one server; prints its figures."""
    parent, child = multiprocessing.Pipe()
    poller = multiprocessing.get_context("fork").Process(
        target=_poll, args=(str(db), args.poll, child), daemon=True
    )
    poller.start()
    try:
        print(f"{label}:")
        steps: list[Step] = []
        first = 0
        expected = 0
        for rate in args.rates:
            step = Step(rate, first, int(rate * args.seconds))
            cpu = _cpu_seconds(pid)
            before = expected
            anyio.run(_send, base, token, step, args)
            first += step.count
            expected += step.count - step.failed
            granted = _wait_granted(db, expected)
            cpu = _cpu_seconds(pid) - cpu
            steps.append(step)
            failed = f", {step.failed:,} in failed requests {step.errors}" if step.failed else ""
            print(
                f"  offered {rate:,.0f} events/s: sent {step.count:,} in {step.elapsed:.2f} s"
                f" ({step.count / step.elapsed:,.0f}/s){failed},"
                f" granted {granted - before:,};"
                f" server CPU {cpu:.2f} s ({cpu / step.count * 1e6:,.0f} us per event)"
            )
            time.sleep(0.5)
        parent.send("stop")
        seen: dict[str, float] = parent.recv()
        with sqlite3.connect(db, timeout=30) as conn:
            created = dict(conn.execute("SELECT customer_id, created_at FROM grants"))
        for step in steps:
            ks = range(step.first, step.first + step.count)
            commit = [seen[f"c{k}"] - step.arrival(k) for k in ks if f"c{k}" in seen]
            stamped = [created[f"c{k}"] - step.arrival(k) for k in ks if f"c{k}" in created]
            answer = [step.answered[k] - step.arrival(k) for k in ks if k in step.answered]
            print(
                f"  {step.rate:,.0f} events/s, from an event's arrival to ({len(commit):,} grants):"
            )
            print(_line("grant committed (seen)", commit))
            print(_line("grant created_at", stamped))
            print(_line("POST answered (durable)", answer))
            print(_line("sender lag behind schedule", step.lag))
        print(f"  peak RSS: {_peak_rss(pid)}")
    finally:
        if poller.is_alive():
            poller.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(args: argparse.Namespace) -> None:
    print(
        f"live bench (open loop): {args.campaigns} live campaigns, {args.seconds:g} s"
        f" per rate, a POST every {args.tick * 1000:g} ms of what arrived,"
        f" <= {args.connections} in flight, grants polled every {args.poll * 1000:g} ms;"
        f" state in {args.dir}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="pmb", dir=args.dir) as tmp:
        root = Path(tmp)
        proc, sock = _start(root, args.profile)
        db = root / "state" / "promod.db"
        try:
            for i in range(args.campaigns):
                _admin(sock, "campaign.apply", {"spec": SPEC.format(i=i)})
                _admin(sock, "campaign.launch", {"campaign": f"live-{i}"})
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with sqlite3.connect(db, timeout=30) as conn:
                    (runs,) = conn.execute(
                        "SELECT count(*) FROM runs WHERE state = 'running'"
                    ).fetchone()
                if runs == args.campaigns:
                    break
                time.sleep(0.1)
            base = "http://" + _admin(sock, "status", {})["http"]
            token = (root / "http-token").read_text().strip()
            _measure("promod", base, token, db, proc.pid, args)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if not args.baseline:
        return
    with tempfile.TemporaryDirectory(prefix="pmb", dir=args.dir) as tmp:
        db = Path(tmp) / "lean.db"
        port = _free_port()
        lean = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("live_baseline.py")), str(db),
             str(port), str(args.campaigns)],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert lean.stdout is not None
            lean.stdout.readline()  # "listening"
            _measure(
                "lean baseline (plain asyncio + sqlite3, same facts, WAL + FULL)",
                f"http://127.0.0.1:{port}",
                "unused",
                db,
                lean.pid,
                args,
            )
        finally:
            lean.terminate()
            lean.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[2000.0, 5000.0],
        help="offered events/s, one step each (default 2000,5000)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each step")
    parser.add_argument("--campaigns", type=int, default=50)
    parser.add_argument("--tick", type=float, default=0.005, help="seconds between POSTs")
    parser.add_argument("--connections", type=int, default=32, help="requests in flight")
    parser.add_argument("--poll", type=float, default=0.001, help="seconds between grant polls")
    parser.add_argument(
        "--dir", default="/tmp", help="where the daemon's state lives (/dev/shm: no fsync cost)"
    )
    parser.add_argument("--profile", help="write a cProfile of the daemon to this file")
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the lean baseline (bench/live_baseline.py) run after promod",
    )
    main(parser.parse_args())
