"""Fixtures for the notifier tests: a real database and config, an App-shaped object."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from promod.clock import Clock, SystemClock
from promod.config import Config, parse_config_text
from promod.notify.outbox import enqueue_sync
from promod.notify.smtp import SmtpChannelType
from promod.notify.webhook import WebhookChannelType
from promod.store.database import Database
from tests.notify.support import SECRET, Receiver, SmtpServer, free_port


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Plugins:
    channel_types: dict[str, Any] = field(
        default_factory=lambda: {"smtp": SmtpChannelType(), "webhook": WebhookChannelType()}
    )


@dataclass
class NotifyApp:
    """The App attributes the notifier and the outbox commands use."""

    config: Config
    db: Database
    plugins: Plugins = field(default_factory=Plugins)
    clock: Clock = field(default_factory=SystemClock)
    notifier: Any = None

    def actor(self, name: str) -> Any:
        assert name == "notifier"
        return self.notifier


def make_config(
    tmp: Path,
    *,
    smtp_port: int | None = None,
    webhook_url: str | None = None,
    events: bool = False,
    alerts: dict[str, list[str]] | None = None,
    extra: str = "",
    notify: str = "",
    smtp_options: str = "",
) -> Config:
    text = f"""
[daemon]
state_dir = "{tmp}/state"
admin_socket = "{tmp}/admin.sock"
[http]
public_url = "https://promo.example.org"
[notify]
backoff_initial = "50ms"
backoff_max = "200ms"
poll_interval = "50ms"
max_attempts = 4
{notify}
[plugins]
circuit_cooldown = "100ms"
"""
    if smtp_port:
        text += f"""
[channels.mail]
type = "smtp"
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "Promotions <promo@example.org>"
timeout = "2s"
alerts_to = ["ops@example.org"]
{smtp_options}
"""
    if webhook_url:
        text += f"""
[channels.backend]
type = "webhook"
url = "{webhook_url}"
secret = "{SECRET}"
timeout = "2s"
"""
    if events:
        text += '\n[webhooks]\nevents = "backend"\n'
    if alerts:
        text += "\n[alerts]\n" + "".join(f'"{k}" = {json.dumps(v)}\n' for k, v in alerts.items())
    text += extra
    return parse_config_text(text, tmp / "promod.toml")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


NOTIFY = {
    "channel": "mail",
    "consent": "marketing_email",
    "subject": "Your ${reward_amount} points are waiting",
    "text": "Hello ${customer_id}, ${reward_amount} points. Code ${reward_code}. "
    "Unsubscribe: ${unsubscribe_url}",
    "html": "<p>Hello ${customer_id}, <b>${reward_amount}</b> points, $$ sign</p>",
}


async def add_campaign(db: Database, campaign_id: str = "winback", notify: Any = NOTIFY) -> None:
    spec = {"id": campaign_id, "name": campaign_id, "kind": "custom_list"}
    if notify is not None:
        spec["notify"] = notify
    now = time.time()
    await db.execute(
        "INSERT INTO campaigns (id, version, state, spec, created_at, updated_at)"
        " VALUES (?, 1, 'running', ?, ?, ?)",
        (campaign_id, json.dumps(spec), now, now),
    )


async def add_customer(
    db: Database, customer_id: str, email: str | None, consents: dict[str, bool] | None = None
) -> None:
    stamp = "2026-01-01T00:00:00Z"
    await db.execute(
        "INSERT INTO customers (id, email, created_at, updated_at) VALUES (?, ?, ?, ?)",
        (customer_id, email, stamp, stamp),
    )
    for name, granted in (consents or {}).items():
        await db.execute(
            "INSERT INTO customer_consents (customer_id, consent, granted, updated_at, source)"
            " VALUES (?, ?, ?, ?, 'import')",
            (customer_id, name, int(granted), stamp),
        )


async def grant_event(
    db: Database, customer_id: str, campaign_id: str = "winback", event_id: str | None = None
) -> str:
    payload = {
        "grant_id": 1,
        "campaign_id": campaign_id,
        "run_id": None,
        "customer_id": customer_id,
        "provider": "wallet_points",
        "amount": "500",
        "value": "5.00",
        "currency": "EUR",
        "code": "XMAS-1234",
        "expires_at": None,
        "reference": None,
    }
    return await enqueue(db, "reward.granted", payload, event_id=event_id)


async def enqueue(
    db: Database, type: str, payload: dict[str, Any], event_id: str | None = None
) -> str:
    def run(conn: Any) -> str:
        return enqueue_sync(conn, type, payload, now=time.time(), event_id=event_id)

    result: str = await db.run_sync(run)
    return result


async def delivery_states(db: Database) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT * FROM deliveries ORDER BY id")
    return [dict(r) for r in rows]


__all__ = ["free_port"]


@asynccontextmanager
async def running_notifier(app: NotifyApp) -> AsyncIterator[Any]:
    """A real NotifierActor running for the block, stopped cleanly after it."""
    from promod.actors.notifier import NotifierActor

    actor = NotifierActor(app)
    app.notifier = actor
    async with anyio.create_task_group() as tg:
        await tg.start(actor.run)
        try:
            yield actor
        finally:
            actor.request_stop()
