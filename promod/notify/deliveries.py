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

import html
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from promod.campaigns.spec import currency_exponent, render_placeholders
from promod.notify import store, store_campaigns
from promod.notify.channel import Message
from promod.notify.render import RenderError, render
from promod.notify.store import MARKETING_SQL, as_tx
from promod.notify.templates import TemplateError, load_template
from promod.notify.unsubscribe import (
    is_suppressed_sync,
    make_preferences_token,
    make_unsubscribe_token,
    preferences_url,
    unsubscribe_key_sync,
    unsubscribe_url,
)
from promod.store.seam import Transaction
from promod.units import format_money

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
NOTIFICATION = "notification.due"  # a notification campaign's message (promod.notify.campaigns)


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

    def __init__(self, conn: Transaction | Any, routing: Routing, now: float) -> None:
        self.tx = as_tx(conn)
        self.routing = routing
        self.now = now
        self.specs: dict[tuple[str, Any], dict[str, Any] | None] = {}
        self.templates: dict[str, dict[str, str] | str] = {}
        self._key: bytes | None = None
        self.counts: dict[str, int] = {}

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = unsubscribe_key_sync(self.tx)
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
        inserted = store.insert_delivery(
            self.tx,
            {
                "event_id": message.event_id,
                "type": message.type,
                "kind": message.kind,
                "channel": channel,
                "customer_id": customer_id,
                "recipient": recipient,
                "consent": consent,
                "campaign_id": campaign_id,
                "message": message.to_json(),
                "state": state,
                "next_attempt_at": self.now,
                "last_error": error,
                "created_at": self.now,
                "updated_at": self.now,
            },
        )
        if inserted and state == "pending":
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
        if type in ("reward.granted", NOTIFICATION):
            self.customer_message(event_id, type, payload, data)

    def spec(self, campaign_id: str, run_id: Any) -> dict[str, Any] | None:
        cache_key = (campaign_id, run_id)
        if cache_key in self.specs:
            return self.specs[cache_key]
        text = store.run_spec(self.tx, campaign_id, run_id)
        spec = json.loads(text) if text is not None else None
        self.specs[cache_key] = spec
        return spec

    def template(self, name: str, jinja: bool = False) -> dict[str, str] | str:
        """The template's texts, or an error message."""
        cache = f"jinja:{name}" if jinja else name
        if cache not in self.templates:
            if self.routing.templates_dir is None:
                self.templates[cache] = f"template {name!r}: no templates directory"
            else:
                try:
                    self.templates[cache] = load_template(
                        self.routing.templates_dir, name, placeholders=not jinja
                    )
                except TemplateError as exc:
                    self.templates[cache] = str(exc)
        return self.templates[cache]

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
        email = store.customer_email(self.tx, customer_id)
        blocked = message_blocked_sync(self.tx, customer_id, email, consent)
        if blocked:
            record("skipped", blocked, recipient=email)
            return
        if email is None and channel_type == "smtp":
            record("skipped", "no_address")
            return
        texts: dict[str, str] = {
            k: str(notify[k]) for k in ("subject", "text", "html") if notify.get(k)
        }
        notification = type == NOTIFICATION
        if notify.get("template"):
            found = self.template(str(notify["template"]), jinja=notification)
            if isinstance(found, str):
                record("dead", found, recipient=email)
                return
            texts = {**found, **({"subject": texts["subject"]} if "subject" in texts else {})}
        token = make_unsubscribe_token(self.key, customer_id, consent)
        link = unsubscribe_url(self.routing.public_url, token)
        preferences = preferences_url(
            self.routing.public_url, make_preferences_token(self.key, customer_id)
        )
        if notification:
            context = self.context(spec or {}, customer_id, payload, link, preferences)
            try:
                rendered = {k: render(v, context, html=k == "html") for k, v in texts.items()}
                if "subject" in rendered:  # one line, whatever the template's layout
                    rendered["subject"] = " ".join(rendered["subject"].split())
            except RenderError as exc:
                record("dead", f"template: {exc}", recipient=email)
                return
        else:
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
        self.send_message(
            event_id,
            type,
            data,
            channel,
            customer_id,
            email,
            consent,
            campaign_id,
            footer(rendered, link, preferences),
            link,
        )

    def send_message(
        self,
        event_id: str,
        type: str,
        data: dict[str, Any],
        channel: str,
        customer_id: str,
        email: str | None,
        consent: str | None,
        campaign_id: str,
        rendered: Mapping[str, str],
        link: str,
    ) -> None:
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

    def context(
        self,
        spec: Mapping[str, Any],
        customer_id: str,
        payload: Mapping[str, Any],
        link: str,
        preferences: str,
    ) -> dict[str, Any]:
        """What a notification campaign's template is rendered with (docs/notifications.md)."""
        tx = self.tx
        row = store_campaigns.customer_row(tx, customer_id)
        done = payload.get("done_steps")
        finished = {str(s) for s in done} if isinstance(done, list) else set()
        notify = spec.get("notify") if isinstance(spec.get("notify"), dict) else {}
        steps = [
            {"id": str(s.get("id")), "text": str(s.get("text")), "done": s.get("id") in finished}
            for s in (notify or {}).get("steps", [])
            if isinstance(s, dict)
        ]
        rewards = []
        for g in store_campaigns.customer_grants(tx, customer_id):
            currency = None if g[5] is None else str(g[5])
            exponent = currency_exponent(currency)
            rewards.append(
                {
                    "campaign_id": g[0],
                    "provider": g[1],
                    "state": g[2],
                    "amount": None if g[3] is None else str(g[3]),
                    "value": format_money(int(g[4] or 0), exponent),
                    "currency": currency,
                    "code": g[6],
                    "granted_at": _iso(float(g[7])),
                }
            )
        consents = {str(r[0]): bool(r[1]) for r in store.consents_of(tx, customer_id)}
        return {
            "customer": {
                "id": customer_id,
                "email": None if row is None else row[1],
                "timezone": None if row is None else row[2],
                "attributes": store_campaigns.attributes(None if row is None else row[3]),
                "created_at": None if row is None else row[4],
            },
            "tags": store_campaigns.customer_tags(tx, customer_id),
            "consents": consents,
            "wallet": {"points": store_campaigns.wallet_points(tx, customer_id)},
            "rewards": rewards,
            "steps": steps,
            "missing_steps": [s for s in steps if not s["done"]],
            "campaign": {"id": spec.get("id"), "name": spec.get("name")},
            "unsubscribe_url": link,
            "preferences_url": preferences,
        }


def footer(rendered: Mapping[str, str], unsubscribe: str, preferences: str) -> dict[str, str]:
    """The texts with the footer every customer message carries: preferences, unsubscribe."""
    out = dict(rendered)
    if "text" in out:
        out["text"] = (
            out["text"].rstrip("\n")
            + f"\n\n--\nYour email preferences: {preferences}\nUnsubscribe: {unsubscribe}\n"
        )
    if "html" in out:
        pref, unsub = html.escape(preferences, quote=True), html.escape(unsubscribe, quote=True)
        block = (
            f'\n<hr><p style="font-size:small"><a href="{pref}">Your email preferences</a>'
            f' &middot; <a href="{unsub}">Unsubscribe</a></p>\n'
        )
        body = out["html"]
        end = body.lower().rfind("</body>")
        out["html"] = body[:end] + block + body[end:] if end >= 0 else body + block
    return out


def message_blocked_sync(
    conn: Transaction | Any, customer_id: str, email: str | None, consent: str | None
) -> str | None:
    """Why a customer message may not go out now (no_consent, suppressed:REASON), or None."""
    tx = as_tx(conn)
    if consent:
        row = store.consent_row(tx, customer_id, consent)
        if row is None or not row[0]:
            return "no_consent"
    if email:
        reason = is_suppressed_sync(tx, email, customer_id, consent)
        if reason:
            return f"suppressed:{reason}"
    return None


_MARKETING_SQL = MARKETING_SQL


def claim_due_sync(
    conn: Transaction | Any,
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
    tx = as_tx(conn)
    rows = store.due_deliveries(tx, channel, now, limit + len(exclude), hold_marketing)
    due: list[dict[str, Any]] = []
    skipped: list[tuple[str, float, int]] = []
    for row in rows:
        if row["id"] in exclude:
            continue
        if len(due) >= limit:
            break
        if row["kind"] == "message" and row["customer_id"]:
            blocked = message_blocked_sync(
                tx, str(row["customer_id"]), row["recipient"], row["consent"]
            )
            if blocked:
                skipped.append((blocked, now, int(row["id"])))
                continue
        due.append(row)
    if skipped:
        store.skip_deliveries(tx, skipped)
    return due


def fanout_sync(
    conn: Transaction | Any, routing: Routing, *, now: float, limit: int = 500
) -> tuple[int, dict[str, int]]:
    """Fan out up to ``limit`` pending outbox events: (events done, new deliveries per channel).

    Runs inside the caller's transaction (``Database.run``).
    """
    tx = as_tx(conn)
    rows = store.pending_events(tx, limit)
    if not rows:
        return 0, {}
    batch = _Fanout(tx, routing, now)
    for row in rows:
        try:
            payload = json.loads(row[3])
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {"value": payload}
        batch.event(str(row[1]), str(row[2]), payload, float(row[4]))
    store.events_done(tx, [int(row[0]) for row in rows], now)
    return len(rows), batch.counts


def outbox_stats_sync(conn: Transaction | Any, now: float) -> dict[str, Any]:
    """What ``promodctl outbox`` shows: depth, oldest pending, failures, dead letters."""
    tx = as_tx(conn)
    events_pending, events_oldest = store.pending_event_figures(tx)
    channels: dict[str, dict[str, Any]] = {}
    for row in store.delivery_figures(tx):
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
    if events_oldest is not None:
        oldest.append(events_oldest)
    oldest_at = min(oldest) if oldest else None
    return {
        "events_pending": events_pending,
        "pending": pending,
        "failing": sum(c["failing"] for c in channels.values()),
        "dead": sum(c["dead"] for c in channels.values()),
        "sent": sum(c["sent"] for c in channels.values()),
        "skipped": sum(c["skipped"] for c in channels.values()),
        "oldest_pending_at": oldest_at,
        "oldest_pending_age": round(now - oldest_at, 3) if oldest_at is not None else None,
        "killswitch": store.killswitch_engaged(tx),
        "channels": sorted(channels.values(), key=lambda c: c["channel"]),
    }
