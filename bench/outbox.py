"""Outbox throughput: campaign mails to aiosmtpd and webhooks to a local server, against raw loops.

Four phases, each in its own process (so each has its own peak RSS), against the
same receivers, with the same number of connections and the same messages:

- ``raw-smtp``: N mails, already rendered to bytes, sent by a bare aiosmtplib
  loop over C connections (the baseline: nothing but the library);
- ``smtp``: N ``reward.granted`` outbox events of a campaign with a mail, through
  the real notifier (fan-out, consent checks, batch claims, composing each mail,
  C SMTP connections, marking sent in groups) until every delivery is ``sent``;
- ``raw-webhook``: N signed POSTs by a bare httpx loop over C connections;
- ``webhook``: N alerts through the notifier's ``webhook`` channel.

It prints throughput, p50/p99 send latency (from a message's send to the
receiver's acceptance) and peak RSS per phase, the ratio to the raw loop, and
the load average (the machine may be shared). Not part of the test run::

    .venv/bin/python bench/outbox.py                        # 20,000 of each, 4 connections
    .venv/bin/python bench/outbox.py --mails 5000 --webhooks 0 --connections 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from promod.actors.notifier import NotifierActor
from promod.clock import SystemClock
from promod.config import Config, parse_config_text
from promod.logs import configure_logging
from promod.notify.channel import Channel, Message
from promod.notify.mailformat import compose_email
from promod.notify.outbox import enqueue_many_sync
from promod.notify.smtp import SmtpChannelType
from promod.notify.webhook import WebhookChannelType, sign
from promod.store.database import Database

SENDER = "Promotions <promo@example.org>"
SECRET = "bench"
PHASES = ("raw-smtp", "smtp", "raw-webhook", "webhook")

# A minimal keep-alive HTTP/1.1 server answering 200 to every POST, run in its own
# process so that the receiver does not compete with the sender for the GIL.
_RECEIVER = r"""
import asyncio, sys

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def _spawn(args: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"receiver on port {port} did not start")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def _result(phase: str, count: int, seconds: float, latencies: list[float]) -> dict[str, Any]:
    return {
        "phase": phase,
        "count": count,
        "seconds": round(seconds, 3),
        "per_second": round(count / seconds, 1),
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


# -- the messages: the same for the raw loops and the notifier ---------------------


def _customer(n: int) -> str:
    return f"c{n:06d}"


def _mail_message(n: int) -> Message:
    """What the notifier renders at fan-out for customer ``n`` (see _seed_campaign)."""
    customer = _customer(n)
    link = f"http://127.0.0.1:8470/v1/unsubscribe?token=bench-{customer}"
    return Message(
        f"evt_mail_{n}",
        "reward.granted",
        "message",
        {"campaign_id": "bench", "customer_id": customer},
        to=f"{customer}@example.org",
        customer_id=customer,
        subject="Your 500 points are waiting",
        text=f"Hello {customer}, 500 points were added to your wallet.\nUnsubscribe: {link}\n",
        unsubscribe_url=link,
    )


def _hook_body(n: int) -> bytes:
    data = {"event_id": f"evt_hook_{n}", "type": "cap.reached", "campaign_id": "c", "n": n}
    return json.dumps(data, separators=(",", ":")).encode()


# -- raw loops -----------------------------------------------------------------------


async def _raw_smtp(port: int, count: int, connections: int) -> dict[str, Any]:
    import aiosmtplib

    mails = [
        compose_email(_mail_message(n), SENDER, (f"{_customer(n)}@example.org",), "mail")
        for n in range(count)
    ]
    queue = list(range(count))
    latencies: list[float] = []

    async def worker() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        while queue:
            n = queue.pop()
            raw = mails[n]
            assert raw is not None
            began = time.perf_counter()
            await smtp.sendmail("promo@example.org", [f"{_customer(n)}@example.org"], raw)
            latencies.append(time.perf_counter() - began)
        await smtp.quit()

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(connections):
            tg.start_soon(worker)
    return _result("raw-smtp", count, time.perf_counter() - started, latencies)


async def _raw_webhook(url: str, count: int, connections: int) -> dict[str, Any]:
    import httpx

    requests = []
    for n in range(count):
        body = _hook_body(n)
        headers = {
            "Content-Type": "application/json",
            "Promod-Event-Id": f"evt_hook_{n}",
            "Promod-Event-Type": "cap.reached",
            "Promod-Signature": sign(SECRET.encode(), body, int(time.time())),
        }
        requests.append((body, headers))
    queue = list(range(count))
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits) as client:

        async def worker() -> None:
            while queue:
                body, headers = requests[queue.pop()]
                began = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                response.raise_for_status()
                latencies.append(time.perf_counter() - began)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(connections):
                tg.start_soon(worker)
        elapsed = time.perf_counter() - started
    return _result("raw-webhook", count, elapsed, latencies)


# -- the notifier ----------------------------------------------------------------------


class _Timed:
    """A channel wrapper that records how long each send took."""

    def __init__(self, inner: Channel, latencies: list[float]) -> None:
        self._inner = inner
        self._latencies = latencies
        self.name = inner.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def send(self, message: Message) -> None:
        began = time.perf_counter()
        await self._inner.send(message)
        self._latencies.append(time.perf_counter() - began)

    async def close(self) -> None:
        await self._inner.close()


@dataclass
class _Plugins:
    channel_types: dict[str, Any] = field(
        default_factory=lambda: {"smtp": SmtpChannelType(), "webhook": WebhookChannelType()}
    )


@dataclass
class _App:
    config: Config
    db: Database
    plugins: _Plugins = field(default_factory=_Plugins)
    clock: SystemClock = field(default_factory=SystemClock)
    circuits: Any = None  # promod.plugins.isolation.board makes it on first use
    circuits_handled: dict[str, int] = field(default_factory=dict)
    circuits_alerted: set[str] = field(default_factory=set)


def _config(root: Path, hook_url: str, smtp_port: int, connections: int) -> Config:
    return parse_config_text(
        f"""
[daemon]
state_dir = "{root}"
admin_socket = "{root}/a.sock"
[http]
public_url = "http://127.0.0.1:8470"
[notify]
poll_interval = "100ms"
batch_size = 500
[channels.backend]
type = "webhook"
url = "{hook_url}"
secret = "{SECRET}"
connections = {connections}
[channels.mail]
type = "smtp"
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "{SENDER}"
connections = {connections}
[alerts]
"cap.reached" = ["backend"]
""",
        root / "promod.toml",
    )


def _seed_campaign(conn: Any, count: int) -> None:
    now = time.time()
    stamp = "2026-01-01T00:00:00Z"
    spec = {
        "id": "bench",
        "notify": {
            "channel": "mail",
            "consent": "marketing_email",
            "subject": "Your ${reward_amount} points are waiting",
            "text": "Hello ${customer_id}, ${reward_amount} points were added to your wallet.\n"
            "Unsubscribe: ${unsubscribe_url}\n",
        },
    }
    conn.execute(
        "INSERT INTO campaigns (id, version, state, spec, created_at, updated_at)"
        " VALUES ('bench', 1, 'running', ?, ?, ?)",
        (json.dumps(spec), now, now),
    )
    conn.executemany(
        "INSERT INTO customers (id, email, created_at, updated_at) VALUES (?, ?, ?, ?)",
        [(_customer(n), f"{_customer(n)}@example.org", stamp, stamp) for n in range(count)],
    )
    conn.executemany(
        "INSERT INTO customer_consents (customer_id, consent, granted, updated_at, source)"
        " VALUES (?, 'marketing_email', 1, ?, 'import')",
        [(_customer(n), stamp) for n in range(count)],
    )
    payloads: list[tuple[str, Mapping[str, Any]]] = [
        (
            f"evt_mail_{n}",
            {"campaign_id": "bench", "customer_id": _customer(n), "amount": "500"},
        )
        for n in range(count)
    ]
    enqueue_many_sync(conn, "reward.granted", payloads, now=now)


def _seed_alerts(conn: Any, count: int) -> None:
    payloads: list[tuple[str, Mapping[str, Any]]] = [
        (f"evt_hook_{n}", {"campaign_id": "c", "cap": "budget", "n": n}) for n in range(count)
    ]
    enqueue_many_sync(conn, "cap.reached", payloads, now=time.time())


async def _notifier(
    phase: str, count: int, connections: int, smtp_port: int, hook_url: str
) -> dict[str, Any]:
    channel = "mail" if phase == "smtp" else "backend"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = await Database.open(root / "promod.db")
        try:
            config = _config(root, hook_url, smtp_port, connections)
            app = _App(config, db)
            seed = _seed_campaign if phase == "smtp" else _seed_alerts
            await db.run_sync(lambda conn: seed(conn, count))
            latencies: list[float] = []
            cfg = config.channels[channel]
            inner = app.plugins.channel_types[cfg.type].create(channel, dict(cfg.options))
            actor = NotifierActor(app, channels={channel: _Timed(inner, latencies)})
            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                await tg.start(actor.run)
                while actor.sent < count:  # accepted (counted in memory: no query load)
                    await anyio.sleep(0.01)
                await actor._marker.flush()  # and committed as sent
                elapsed = time.perf_counter() - started
                actor.request_stop()
            states = await db.fetchall("SELECT state, count(*) FROM deliveries GROUP BY state", ())
            assert {str(r[0]): int(r[1]) for r in states} == {"sent": count}, states
        finally:
            await db.close()
    return _result(phase, count, elapsed, latencies)


async def _phase(args: argparse.Namespace) -> dict[str, Any]:
    hook_url = f"http://127.0.0.1:{args.hook_port}/hook"
    if args.phase == "raw-smtp":
        return await _raw_smtp(args.smtp_port, args.mails, args.connections)
    if args.phase == "raw-webhook":
        return await _raw_webhook(hook_url, args.webhooks, args.connections)
    count = args.mails if args.phase == "smtp" else args.webhooks
    return await _notifier(args.phase, count, args.connections, args.smtp_port, hook_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mails", type=int, default=20000)
    parser.add_argument("--webhooks", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--smtp-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hook-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure_logging("warning", "console")
    if args.phase:  # a child: one phase, its figures as one JSON line
        print(json.dumps(asyncio.run(_phase(args))), flush=True)
        return

    hook_port, smtp_port = _free_port(), _free_port()
    receiver = _spawn([sys.executable, "-c", _RECEIVER, str(hook_port)], hook_port)
    smtp_at = f"127.0.0.1:{smtp_port}"
    smtpd = _spawn(
        [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink", "-l", smtp_at],
        smtp_port,
    )
    load_before = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    try:
        for phase in PHASES:
            if (args.mails if "smtp" in phase else args.webhooks) <= 0:
                continue
            child = subprocess.run(
                [
                    *(sys.executable, __file__, "--phase", phase),
                    *("--mails", str(args.mails), "--webhooks", str(args.webhooks)),
                    *("--connections", str(args.connections)),
                    *("--smtp-port", str(smtp_port), "--hook-port", str(hook_port)),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode != 0:
                raise SystemExit(f"phase {phase} failed:\n{child.stderr}")
            results[phase] = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        receiver.terminate()
        smtpd.terminate()
        receiver.wait()
        smtpd.wait()
    load_after = os.getloadavg()
    print(f"connections per channel: {args.connections}, cpus: {os.cpu_count()}")
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    for r in results.values():
        raw = results.get(f"raw-{r['phase']}")
        ratio = f"  = {r['per_second'] / raw['per_second']:.2f} of raw" if raw else ""
        print(
            f"{r['phase']:12s} {r['count']:6d} in {r['seconds']:7.2f} s = {r['per_second']:8.1f}/s"
            f"  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms"
            f"  peak RSS {r['peak_rss_mb']:6.1f} MB{ratio}"
        )
    print(f"load average after:  {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
