"""Demo data for a first run: customers, their purchases and a draft campaign.

``promod init DIR --demo`` (which ``make run`` uses) loads the files of
``promod/data/demo`` into the new instance's database, so an operator can
simulate and launch a campaign right away::

    summary = load_demo(config)   # {"customers": 200, "events": 606, "campaigns": [...]}
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import anyio

from promod.campaigns import store as campaigns
from promod.campaigns.spec import load_spec
from promod.config import Config
from promod.customers.records import loads_record, parse_customer, parse_event
from promod.customers.store import insert_events_sync, upsert_customers_sync
from promod.store.database import Database
from promod.store.seam import Transaction

DEMO = resources.files("promod") / "data" / "demo"


def _records(name: str) -> list[dict[str, Any]]:
    text = (DEMO / name).read_text(encoding="utf-8")
    return [loads_record(line) for line in text.splitlines() if line.strip()]


async def _load(config: Config) -> dict[str, Any]:
    now = time.time()
    customers = [parse_customer(obj) for obj in _records("customers.jsonl")]
    events = [parse_event(obj) for obj in _records("events.jsonl")]
    db = await Database.open(config.store.path)
    try:

        def write(tx: Transaction) -> int:
            upsert_customers_sync(tx, customers, now=now, source="demo")
            stored, _ = insert_events_sync(tx, events)
            return len(stored)

        stored = await db.run(write)
        applied = []
        for spec_file in sorted((p for p in DEMO.iterdir() if p.name.endswith(".toml")), key=str):
            spec = load_spec(
                spec_file.read_text(encoding="utf-8"),
                "toml",
                default_timezone=config.daemon.timezone,
            )
            await campaigns.apply(db, spec, by="promod init --demo", now=now)
            applied.append(spec.id)
    finally:
        await db.close()
    return {"customers": len(customers), "events": stored, "campaigns": applied}


def load_demo(config: Config) -> dict[str, Any]:
    """Load the demo customers, events and draft campaigns into ``config``'s store."""
    result: dict[str, Any] = anyio.run(_load, config)
    return result
