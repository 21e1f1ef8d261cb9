"""Benchmark: events ingested per second over HTTP, with request latency p50/p99.

Starts the real HTTP service (uvicorn + the Starlette app) on an ephemeral loopback
port over a throw-away database, then for each batch size runs ``--clients``
concurrent httpx clients posting ``POST /v1/events`` for ``--seconds`` seconds.
Every event has an id (the idempotent path). Prints events/s and p50/p99 per
request; removes the database::

    .venv/bin/python bench/http_events.py [--seconds 3] [--clients 8] [--batches 1,100,1000]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from promod import __version__
from promod.config import Config, parse_config
from promod.http.server import HttpService
from promod.logs import configure_logging
from promod.store.database import Database
from promod.testing import make_app

TOKEN = "bench-token"


def _config() -> Config:
    return parse_config(
        {
            "http": {
                "listen": "127.0.0.1:0",
                "max_body": "16MiB",
                "tokens": [
                    {
                        "name": "bench",
                        "sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
                        "scopes": ["events:write"],
                    }
                ],
            }
        },
        Path("/nonexistent/promod.toml"),
    )


async def _run_batch_size(
    base: str, batch: int, clients: int, seconds: float, ids: itertools.count[int]
) -> tuple[int, list[float]]:
    latencies: list[float] = []
    accepted = 0
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def worker() -> None:
        nonlocal accepted
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            while time.perf_counter() < deadline:
                events = [
                    {
                        "id": f"e{n}",
                        "customer_id": f"c{n % 10_000}",
                        "name": "purchase",
                        "ts": "2026-11-20T18:03:00Z",
                        "properties": {"amount": "59.90"},
                    }
                    for n in itertools.islice(ids, batch)
                ]
                started = time.perf_counter()
                r = await client.post("/v1/events", json={"events": events})
                latencies.append(time.perf_counter() - started)
                r.raise_for_status()
                accepted += r.json()["accepted"]

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(worker)
    elapsed = time.perf_counter() - started
    return int(accepted / elapsed), latencies


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main(args: argparse.Namespace) -> None:
    configure_logging("warning", "console")
    with tempfile.TemporaryDirectory() as tmp:
        db = await Database.open(Path(tmp) / "bench.db")
        app = make_app(db, config=_config())
        service = HttpService(app)
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(service.run)
                assert service.bound is not None
                base = f"http://{service.bound[0]}:{service.bound[1]}"
                ids = itertools.count()
                print(
                    f"promod {__version__}: POST /v1/events, {args.clients} clients, "
                    f"{args.seconds:g} s per batch size"
                )
                for batch in args.batches:
                    rate, lat = await _run_batch_size(base, batch, args.clients, args.seconds, ids)
                    print(
                        f"  batch {batch:>5}: {rate:>8,} events/s  "
                        f"{len(lat):>6} requests  p50 {_ms(lat, 0.5):7.1f} ms  "
                        f"p99 {_ms(lat, 0.99):7.1f} ms  mean {statistics.mean(lat) * 1000:6.1f} ms"
                    )
                tg.cancel_scope.cancel()
            row = await db.fetchone("SELECT count(*) FROM events")
            print(f"  stored events: {row[0] if row else 0:,}")
        finally:
            await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 100, 1000]
    )
    anyio.run(main, parser.parse_args())
