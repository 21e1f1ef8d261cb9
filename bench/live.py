"""Benchmark: live-action events through HTTP into grants, with 50 active live campaigns.

Starts a real daemon (``promod init`` + ``promod run``, system clock) in a temporary
directory, applies and launches ``--campaigns`` live campaigns (campaign i rewards
event ``action{i}`` with ``amount >= i``), then ``--clients`` concurrent httpx clients
post batches of ``--batch`` events for ``--seconds`` seconds; every event matches one
campaign for a new customer, so every event leads to one grant. Prints events/s
accepted and granted, and p50/p99 from event accepted (the POST's response) and from
the POST's start to the grant's commit (``grants.created_at``, the ledger's batch time,
a little before its commit)::

    .venv/bin/python bench/live.py [--seconds 5] [--clients 8] [--batch 50] [--campaigns 50]
                                   [--rate 500] [--dir /dev/shm] [--profile FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
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
    proc = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=root,
    )
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


async def _load(
    base: str, token: str, args: argparse.Namespace
) -> tuple[float, dict[str, tuple[float, float]]]:
    """Post for ``args.seconds``; returns the elapsed time and, per event id, (sent, accepted)."""
    times: dict[str, tuple[float, float]] = {}
    deadline = time.perf_counter() + args.seconds
    counter = iter(range(10**9))
    headers = {"Authorization": f"Bearer {token}"}

    # With --rate, each client posts its share of the rate on a fixed beat (open loop).
    interval = args.batch * args.clients / args.rate if args.rate else 0.0

    async def worker(offset: float) -> None:
        beat = time.perf_counter() + offset
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            while time.perf_counter() < deadline:
                if interval:
                    beat += interval
                    await anyio.sleep(max(0.0, beat - time.perf_counter()))
                ns = [next(counter) for _ in range(args.batch)]
                ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))
                events = [
                    {
                        "id": f"e{n}",
                        "customer_id": f"c{n}",
                        "name": f"action{n % args.campaigns}",
                        "ts": ts,
                        "properties": {"amount": f"{n % args.campaigns}.50"},
                    }
                    for n in ns
                ]
                sent = time.time()
                r = await client.post("/v1/events", json={"events": events})
                accepted = time.time()
                r.raise_for_status()
                for n in ns:
                    times[f"e{n}"] = (sent, accepted)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for k in range(args.clients):
            tg.start_soon(worker, interval * k / args.clients)
    return time.perf_counter() - started, times


def _q(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="pmb", dir=args.dir) as tmp:
        root = Path(tmp)
        proc, sock = _start(root, args.profile)
        try:
            for i in range(args.campaigns):
                _admin(sock, "campaign.apply", {"spec": SPEC.format(i=i)})
                _admin(sock, "campaign.launch", {"campaign": f"live-{i}"})
            db = root / "state" / "promod.db"
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
            print(
                f"live bench: {args.campaigns} live campaigns, {args.clients} clients, "
                f"batches of {args.batch}, {args.seconds:g} s"
                + (f", offered {args.rate:g} events/s" if args.rate else ", closed loop")
            )
            elapsed, times = anyio.run(_load, base, token, args)
            # Let the ledger finish what was fired.
            expected = len(times)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with sqlite3.connect(db, timeout=30) as conn:
                    (granted,) = conn.execute("SELECT count(*) FROM grants").fetchone()
                if granted >= expected:
                    break
                time.sleep(0.2)
            with sqlite3.connect(db, timeout=30) as conn:
                rows = conn.execute(
                    "SELECT e.event_id, g.created_at FROM grants g JOIN live_firings f"
                    " ON f.run_id = g.run_id AND f.customer_id = g.customer_id"
                    " JOIN events e ON e.seq = f.event_seq"
                ).fetchall()
                (last,) = conn.execute("SELECT max(created_at) FROM grants").fetchone()
            from_accept = [at - times[eid][1] for eid, at in rows if eid in times]
            from_send = [at - times[eid][0] for eid, at in rows if eid in times]
            first = min(s for s, _ in times.values())
            print(f"  events accepted: {expected:,} ({expected / elapsed:,.0f} events/s)")
            print(
                f"  grants: {len(rows):,} ({len(rows) / max(1e-9, (last or first) - first):,.0f}"
                " grants/s from first POST to last grant)"
            )
            posts = [accepted - sent for sent, accepted in set(times.values())]
            print(
                f"  POST /v1/events (match + fire included): p50 {_q(posts, 0.5):7.1f} ms"
                f"  p99 {_q(posts, 0.99):7.1f} ms"
            )
            print(
                f"  accepted -> grant: p50 {_q(from_accept, 0.5):7.1f} ms"
                f"  p99 {_q(from_accept, 0.99):7.1f} ms"
            )
            print(
                f"  POST start -> grant: p50 {_q(from_send, 0.5):7.1f} ms"
                f"  p99 {_q(from_send, 0.99):7.1f} ms"
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--campaigns", type=int, default=50)
    parser.add_argument("--rate", type=float, help="offered events/s (default: closed loop)")
    parser.add_argument(
        "--dir", default="/tmp", help="where the daemon's state lives (/dev/shm: no fsync cost)"
    )
    parser.add_argument("--profile", help="write a cProfile of the daemon to this file")
    main(parser.parse_args())
