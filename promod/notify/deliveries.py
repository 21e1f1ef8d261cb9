"""Deliveries: outbox events fanned out per channel, their retries and dead letters.

The notifier turns each pending outbox event into deliveries in ONE transaction
(the event is marked done in the same one, so a crash repeats the fan-out or
none of it; ``UNIQUE (event_id, kind, channel)`` makes a repeat harmless):

- ``alert`` to every channel ``[alerts]`` routes the event type to;
- ``webhook`` to ``[webhooks] events`` for reward.granted and campaign.*, and to
  ``[webhooks] clearance`` for clearance.required (skipped when the same channel
  already gets the event as an alert: one event id reaches a channel once);
- ``message`` to the customer on reward.granted through the campaign's
  ``notify.channel``, rendered from its texts or template, unless the customer
  lacks the campaign's consent, has no address, or the address is suppressed
  (then the row is recorded as ``skipped`` with the reason).

A delivery is marked ``sent`` right after the channel accepted it, and a sent
delivery is final (a trigger refuses to change it)::

    events, per_channel = fanout_sync(conn, routing, now=time.time(), limit=500)
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from promod.campaigns.spec import render_placeholders
from promod.ledger.killswitch import is_engaged_sync
from promod.notify.channel import Message
from promod.notify.templates import TemplateError, load_template
from promod.notify.unsubscribe import (
    is_suppressed_sync,
    make_unsubscribe_token,
    unsubscribe_key_sync,
    unsubscribe_url,
)

__all__ = [
    "EVENT_WEBHOOKS",
    "Routing",
    "backoff_delay",
    "claim_due_sync",
    "fanout_sync",
    "is_marketing",
    "message_blocked_sync",
    "outbox_stats_sync",
]

EVENT_WEBHOOKS = frozenset({"reward.granted", "campaign.paused", "campaign.completed"})
CLEARANCE_EVENTS = frozenset({"clearance.required"})


@dataclass(frozen=True)
class Routing:
    """What fan-out needs from the config: routes, channel types, links, templates."""

    alerts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    events_channel: str | None = None
    clearance_channel: str | None = None
    channel_types: Mapping[str, str] = field(default_factory=dict)  # name -> type
    public_url: str = "http://127.0.0.1:8470"
    templates_dir: Path | None = None
    list_consents: Mapping[str, str] = field(default_factory=dict)  # CRM list -> its consent

    @classmethod
    def from_config(cls, config: Any, templates: Path | None) -> Routing:
        return cls(
            alerts=dict(config.alerts),
            events_channel=config.webhooks.events,
            clearance_channel=config.webhooks.clearance,
            channel_types={name: ch.type for name, ch in config.channels.items()},
            public_url=config.http.public_url,
            templates_dir=templates,
            list_consents={
                cfg.list_name: cfg.consent for cfg in getattr(config, "crm", {}).values()
            },
        )


def is_marketing(kind: str, type: str) -> bool:
    """Customer messages and reward webhooks: what the kill switch holds back."""
    return kind == "message" or (kind == "webhook" and type == "reward.granted")


def backoff_delay(attempts: int, initial: float, maximum: float) -> float:
    """Delay before attempt ``attempts + 1``: exponential, capped, with jitter (50-100%)."""
    base = min(maximum, initial * 2.0 ** max(0, attempts - 1))
    return base * (0.5 + random.random() / 2)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _iso(float(value))
    return str(value)


class _Fanout:
    """One fan-out batch: caches specs, templates and the unsubscribe key."""

    def __init__(self, conn: sqlite3.Connection, routing: Routing, now: float) -> None:
        self.conn = conn
        self.routing = routing
        self.now = now
        self.specs: dict[tuple[str, Any], dict[str, Any] | None] = {}
        self.templates: dict[str, dict[str, str] | str] = {}
        self._key: bytes | None = None
        self.counts: dict[str, int] = {}

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = unsubscribe_key_sync(self.conn)
        return self._key

    def insert(
        self,
        message: Message,
        channel: str,
        *,
        state: str = "pending",
        error: str | None = None,
        customer_id: str | None = None,
        recipient: str | None = None,
        consent: str | None = None,
        campaign_id: str | None = None,
    ) -> None:
        cur = self.conn.execute(
            "INSERT INTO deliveries (event_id, type, kind, channel, customer_id, recipient,"
            " consent, campaign_id, message, state, next_attempt_at, last_error, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (event_id, kind, channel) DO NOTHING",
            (
                message.event_id,
                message.type,
                message.kind,
                channel,
                customer_id,
                recipient,
                consent,
                campaign_id,
                message.to_json(),
                state,
                self.now,
                error,
                self.now,
                self.now,
            ),
        )
        if cur.rowcount and state == "pending":
            self.counts[channel] = self.counts.get(channel, 0) + 1

    def event(self, event_id: str, type: str, payload: dict[str, Any], created_at: float) -> None:
        data = {"event_id": event_id, "type": type, "occurred_at": _iso(created_at)}
        data.update({k: v for k, v in payload.items() if k not in data})
        reached: set[str] = set()
        for channel in self.routing.alerts.get(type, ()):
            if channel not in reached:
                reached.add(channel)
                self.insert(Message(event_id, type, "alert", data), channel)
        hook: str | None = None
        if type in EVENT_WEBHOOKS:
            hook = self.routing.events_channel
        elif type in CLEARANCE_EVENTS:
            hook = self.routing.clearance_channel
        if hook and hook not in reached:
            self.insert(
                Message(event_id, type, "webhook", data),
                hook,
                campaign_id=payload.get("campaign_id"),
            )
        if type == "reward.granted":
            self.customer_message(event_id, type, payload, data)

    def spec(self, campaign_id: str, run_id: Any) -> dict[str, Any] | None:
        cache_key = (campaign_id, run_id)
        if cache_key in self.specs:
            return self.specs[cache_key]
        row = None
        if run_id is not None:
            row = self.conn.execute(
                "SELECT cv.spec FROM runs r JOIN campaign_versions cv"
                " ON cv.campaign_id = r.campaign_id AND cv.version = r.version WHERE r.id = ?",
                (run_id,),
            ).fetchone()
        if row is None:
            row = self.conn.execute(
                "SELECT spec FROM campaigns WHERE id = ?", (campaign_id,)
            ).fetchone()
        spec = json.loads(row[0]) if row is not None else None
        self.specs[cache_key] = spec
        return spec

    def template(self, name: str) -> dict[str, str] | str:
        """The template's texts, or an error message."""
        if name not in self.templates:
            if self.routing.templates_dir is None:
                self.templates[name] = f"template {name!r}: no templates directory"
            else:
                try:
                    self.templates[name] = load_template(self.routing.templates_dir, name)
                except TemplateError as exc:
                    self.templates[name] = str(exc)
        return self.templates[name]

    def customer_message(
        self, event_id: str, type: str, payload: dict[str, Any], data: dict[str, Any]
    ) -> None:
        campaign_id = payload.get("campaign_id")
        customer_id = payload.get("customer_id")
        if not isinstance(campaign_id, str) or not isinstance(customer_id, str):
            return
        spec = self.spec(campaign_id, payload.get("run_id"))
        notify = (spec or {}).get("notify")
        if not isinstance(notify, dict) or not notify.get("channel"):
            return
        channel = str(notify["channel"])
        consent = notify.get("consent")
        if spec is not None and spec.get("kind") == "custom_list":
            # A CRM list's consent is the consent checked before a message to its members.
            consent = self.routing.list_consents.get(str(spec.get("list")), consent)
        base = Message(event_id, type, "message", data, customer_id=customer_id)

        def record(state: str, error: str, **extra: Any) -> None:
            self.insert(
                base,
                channel,
                state=state,
                error=error,
                customer_id=customer_id,
                consent=consent,
                campaign_id=campaign_id,
                **extra,
            )

        channel_type = self.routing.channel_types.get(channel)
        if channel_type is None:
            record("dead", f"no channel named {channel!r} in the config")
            return
        row = self.conn.execute(
            "SELECT email FROM customers WHERE id = ?", (customer_id,)
        ).fetchone()
        email = str(row[0]) if row is not None and row[0] else None
        blocked = message_blocked_sync(self.conn, customer_id, email, consent)
        if blocked:
            record("skipped", blocked, recipient=email)
            return
        if email is None and channel_type == "smtp":
            record("skipped", "no_address")
            return
        texts: dict[str, str] = {
            k: str(notify[k]) for k in ("subject", "text", "html") if notify.get(k)
        }
        if notify.get("template"):
            found = self.template(str(notify["template"]))
            if isinstance(found, str):
                record("dead", found, recipient=email)
                return
            texts = {**found, **({"subject": texts["subject"]} if "subject" in texts else {})}
        token = make_unsubscribe_token(self.key, customer_id, consent)
        link = unsubscribe_url(self.routing.public_url, token)
        values = {
            "customer_id": customer_id,
            "email": email or "",
            "reward_amount": _text(payload.get("amount")),
            "reward_code": _text(payload.get("code")),
            "reward_value": _text(payload.get("value")),
            "currency": _text(payload.get("currency")),
            "expires_at": _text(payload.get("expires_at")),
            "unsubscribe_url": link,
        }
        try:
            rendered = {k: render_placeholders(v, values) for k, v in texts.items()}
        except ValueError as exc:
            record("dead", f"template: {exc}", recipient=email)
            return
        message = Message(
            event_id,
            type,
            "message",
            data,
            to=email,
            customer_id=customer_id,
            subject=rendered.get("subject"),
            text=rendered.get("text"),
            html=rendered.get("html"),
            headers={
                "List-Unsubscribe": f"<{link}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            unsubscribe_url=link,
        )
        self.insert(
            message,
            channel,
            customer_id=customer_id,
            recipient=email,
            consent=consent,
            campaign_id=campaign_id,
        )


def message_blocked_sync(
    conn: sqlite3.Connection, customer_id: str, email: str | None, consent: str | None
) -> str | None:
    """Why a customer message may not go out now (no_consent, suppressed:REASON), or None."""
    if consent:
        row = conn.execute(
            "SELECT granted FROM customer_consents WHERE customer_id = ? AND consent = ?",
            (customer_id, consent),
        ).fetchone()
        if row is None or not row[0]:
            return "no_consent"
    if email:
        reason = is_suppressed_sync(conn, email, customer_id, consent)
        if reason:
            return f"suppressed:{reason}"
    return None


_MARKETING_SQL = "(kind = 'message' OR (kind = 'webhook' AND type = 'reward.granted'))"
_CLAIM_COLUMNS = (
    "id",
    "event_id",
    "type",
    "kind",
    "message",
    "attempts",
    "customer_id",
    "recipient",
    "consent",
)


def claim_due_sync(
    conn: sqlite3.Connection,
    channel: str,
    *,
    now: float,
    limit: int,
    hold_marketing: bool = False,
    exclude: frozenset[int] = frozenset(),
) -> list[dict[str, Any]]:
    """Take up to ``limit`` due deliveries of ``channel``, oldest first, in one transaction.

    A customer message whose consent was withdrawn or whose address was
    suppressed since fan-out is marked ``skipped`` with the reason here (in the
    same transaction) and not returned. With ``hold_marketing`` (the kill switch)
    marketing deliveries are left waiting; ``exclude`` names deliveries already
    claimed and still being sent. The rows stay ``pending`` until the channel
    accepted them, so a crash leaves every one of them due.
    """
    held = f" AND NOT {_MARKETING_SQL}" if hold_marketing else ""
    rows = conn.execute(
        f"SELECT {', '.join(_CLAIM_COLUMNS)} FROM deliveries"
        " WHERE state = 'pending' AND channel = ?"
        f" AND next_attempt_at <= ?{held} ORDER BY next_attempt_at, id LIMIT ?",
        (channel, now, limit + len(exclude)),
    ).fetchall()
    due: list[dict[str, Any]] = []
    skipped: list[tuple[str, float, int]] = []
    for values in rows:
        row = dict(zip(_CLAIM_COLUMNS, tuple(values), strict=True))
        if row["id"] in exclude:
            continue
        if len(due) >= limit:
            break
        if row["kind"] == "message" and row["customer_id"]:
            blocked = message_blocked_sync(
                conn, str(row["customer_id"]), row["recipient"], row["consent"]
            )
            if blocked:
                skipped.append((blocked, now, int(row["id"])))
                continue
        due.append(row)
    if skipped:
        conn.executemany(
            "UPDATE deliveries SET state = 'skipped', last_error = ?, updated_at = ?"
            " WHERE id = ? AND state = 'pending'",
            skipped,
        )
    return due


def fanout_sync(
    conn: sqlite3.Connection, routing: Routing, *, now: float, limit: int = 500
) -> tuple[int, dict[str, int]]:
    """Fan out up to ``limit`` pending outbox events: (events done, new deliveries per channel).

    Runs inside the caller's transaction (``Database.run_sync``).
    """
    rows = conn.execute(
        "SELECT id, event_id, type, payload, created_at FROM outbox"
        " WHERE state = 'pending' ORDER BY id LIMIT ?",
        (limit,),
    ).fetchall()
    if not rows:
        return 0, {}
    batch = _Fanout(conn, routing, now)
    for row in rows:
        try:
            payload = json.loads(row[3])
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {"value": payload}
        batch.event(str(row[1]), str(row[2]), payload, float(row[4]))
    conn.executemany(
        "UPDATE outbox SET state = 'done', fanned_at = ? WHERE id = ?",
        [(now, row[0]) for row in rows],
    )
    return len(rows), batch.counts


def outbox_stats_sync(conn: sqlite3.Connection, now: float) -> dict[str, Any]:
    """What ``promodctl outbox`` shows: depth, oldest pending, failures, dead letters."""
    events_pending = conn.execute(
        "SELECT count(*), min(created_at) FROM outbox WHERE state = 'pending'"
    ).fetchone()
    channels: dict[str, dict[str, Any]] = {}
    for row in conn.execute(
        "SELECT channel, state, count(*), min(created_at), sum(attempts > 0)"
        " FROM deliveries GROUP BY channel, state"
    ):
        entry = channels.setdefault(
            str(row[0]),
            {
                "channel": str(row[0]),
                "pending": 0,
                "failing": 0,
                "oldest_pending": None,
                "sent": 0,
                "dead": 0,
                "skipped": 0,
                "dropped": 0,
            },
        )
        entry[str(row[1])] = int(row[2])
        if row[1] == "pending":
            entry["oldest_pending"] = row[3]
            entry["failing"] = int(row[4] or 0)
    pending = sum(c["pending"] for c in channels.values())
    oldest = [c["oldest_pending"] for c in channels.values() if c["oldest_pending"] is not None]
    if events_pending[1] is not None:
        oldest.append(events_pending[1])
    oldest_at = min(oldest) if oldest else None
    return {
        "events_pending": int(events_pending[0]),
        "pending": pending,
        "failing": sum(c["failing"] for c in channels.values()),
        "dead": sum(c["dead"] for c in channels.values()),
        "sent": sum(c["sent"] for c in channels.values()),
        "skipped": sum(c["skipped"] for c in channels.values()),
        "oldest_pending_at": oldest_at,
        "oldest_pending_age": round(now - oldest_at, 3) if oldest_at is not None else None,
        "killswitch": is_engaged_sync(conn),
        "channels": sorted(channels.values(), key=lambda c: c["channel"]),
    }
