"""Outbox throughput: messages per second to a local webhook receiver and to aiosmtpd.

Seeds N outbox events into a fresh database, runs the real notifier actor with
the built-in ``webhook`` and ``smtp`` channels against local receivers, and
prints how many deliveries per second were sent and marked sent. Not part of
the test run::

    .venv/bin/python bench/outbox.py            # 2,000 webhooks, 1,000 mails
    .venv/bin/python bench/outbox.py --webhooks 5000 --mails 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from promod.actors.notifier import NotifierActor
from promod.app import App
from promod.config import Config, parse_config_text
from promod.logs import configure_logging
from promod.notify.outbox import enqueue_many_sync
from promod.plugins.host import PluginHost
from promod.store.database import Database
from promod.testing import make_app

# A minimal keep-alive HTTP/1.1 server answering 200 to every POST, run in its own
# process so that the receiver does not compete with the notifier for the GIL.
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


def _config(root: Path, hook_url: str, smtp_port: int, rate: float | None) -> Config:
    rate_line = f"rate = {rate}" if rate else ""
    return parse_config_text(
        f"""
[daemon]
state_dir = "{root}"
admin_socket = "{root}/a.sock"
[notify]
poll_interval = "100ms"
batch_size = 500
[channels.backend]
type = "webhook"
url = "{hook_url}"
secret = "bench"
[channels.mail]
type = "smtp"
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "bench@example.org"
alerts_to = ["ops@example.org"]
{rate_line}
[alerts]
"cap.reached" = ["backend"]
"codepool.low" = ["mail"]
""",
        root / "promod.toml",
    )


async def _run(kind: str, count: int, app: App) -> float:
    event = {"webhook": "cap.reached", "smtp": "codepool.low"}[kind]
    payloads = [(f"evt_{kind}_{n}", {"pool": "p", "cap": "budget", "n": n}) for n in range(count)]
    await app.db.run_sync(lambda c: enqueue_many_sync(c, event, payloads, now=time.time()))
    actor = NotifierActor(app)
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        await tg.start(actor.run)
        while True:
            row = await app.db.fetchone(
                "SELECT count(*) FROM deliveries WHERE type = ? AND state = 'sent'", (event,)
            )
            if row[0] >= count:
                break
            await anyio.sleep(0.01)
        elapsed = time.perf_counter() - started
        actor.request_stop()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=None, help="smtp rate limit (msg/s)")
    args = parser.parse_args()
    configure_logging("warning", "console")

    hook_port, smtp_port = _free_port(), _free_port()
    receiver = _spawn([sys.executable, "-c", _RECEIVER, str(hook_port)], hook_port)
    smtpd = _spawn(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-c",
            "aiosmtpd.handlers.Sink",
            "-l",
            f"127.0.0.1:{smtp_port}",
        ],
        smtp_port,
    )
    results = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            url = f"http://127.0.0.1:{hook_port}/hook"
            db = await Database.open(root / "promod.db")
            plugins = PluginHost.load(builtins=("promod.builtin.notify",), entry_points=False)
            app = make_app(db, config=_config(root, url, smtp_port, args.rate), plugins=plugins)
            try:
                if args.webhooks:
                    results["webhook"] = (args.webhooks, await _run("webhook", args.webhooks, app))
                if args.mails:
                    results["smtp"] = (args.mails, await _run("smtp", args.mails, app))
            finally:
                await db.close()
    finally:
        receiver.terminate()
        smtpd.terminate()
        receiver.wait()
        smtpd.wait()
    for kind, (count, secs) in results.items():
        print(f"{kind:8s} {count:6d} deliveries in {secs:6.2f} s = {count / secs:8.1f} msg/s")
    print(json.dumps({k: round(c / s, 1) for k, (c, s) in results.items()}))


if __name__ == "__main__":
    asyncio.run(main())
