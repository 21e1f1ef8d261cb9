"""The delivery channel plugin protocol: channel types, channels, messages, failures.

A plugin registers channel *types* through ``promod_register_channels``; the
notifier calls ``create(name, options)`` once per ``[channels.NAME]`` of that
type and then ``await channel.send(message)`` per delivery. ``send`` returns when
the receiver has accepted the message, or raises :class:`TemporaryFailure`
(retried with backoff, or after ``retry_after`` seconds) or
:class:`PermanentFailure` (dead-lettered at once). Any other exception counts as
temporary. ``close()`` releases connections when the daemon stops::

    class SmsType:
        type = "sms"

        def create(self, name: str, options: Mapping[str, Any]) -> Channel:
            return SmsChannel(name, options)

    @hookimpl
    def promod_register_channels():
        return [SmsType()]

A channel may set ``rate`` (messages per second; the notifier paces sends with
a token bucket), ``burst`` (how many may go at once after a quiet spell; default
``rate``) and ``concurrency`` (sends in flight at once; default 1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any, Protocol, runtime_checkable

import anyio

__all__ = [
    "Channel",
    "ChannelError",
    "ChannelType",
    "DeliveryFailed",
    "Message",
    "PermanentFailure",
    "TemporaryFailure",
    "TokenBucket",
]

KINDS = ("alert", "webhook", "message")


@dataclass(frozen=True)
class Message:
    """One delivery's content.

    ``data`` is the event as a webhook body (``event_id``, ``type``,
    ``occurred_at`` and the event's fields). ``kind`` is ``alert`` (an operator
    alert), ``webhook`` (an event for the site's backend) or ``message`` (a
    campaign message to the customer ``customer_id`` at ``to``, with ``subject``,
    ``text`` and/or ``html`` already rendered and extra ``headers`` such as
    ``List-Unsubscribe``).
    """

    event_id: str
    type: str
    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)
    to: str | None = None
    customer_id: str | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    unsubscribe_url: str | None = None

    def to_json(self) -> str:
        # The fields as they are (json.dumps walks the mappings): asdict's deep copy of
        # every event's data cost more than the rest of a mass mailing's fan-out.
        fields = {f.name: getattr(self, f.name) for f in _FIELDS}
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False, default=dict)

    @classmethod
    def from_json(cls, text: str) -> Message:
        raw = json.loads(text)
        return cls(**raw)


_FIELDS = dataclass_fields(Message)


class ChannelError(Exception):
    """A channel's options are invalid (raised by ``create``)."""


class DeliveryFailed(Exception):
    """``send`` could not deliver; subclasses say whether to retry."""

    permanent = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TemporaryFailure(DeliveryFailed):
    """Retry later: after ``retry_after`` seconds when given, else with backoff."""


class PermanentFailure(DeliveryFailed):
    """Never retry (dead letter). ``bounced``: the address is bad; it is suppressed."""

    permanent = True

    def __init__(self, message: str, *, bounced: bool = False) -> None:
        super().__init__(message)
        self.bounced = bounced


@runtime_checkable
class Channel(Protocol):
    """One configured channel instance."""

    name: str

    async def send(self, message: Message) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class ChannelType(Protocol):
    """What ``promod_register_channels`` returns: a factory for one ``type``."""

    type: str

    def create(self, name: str, options: Mapping[str, Any]) -> Channel: ...


class TokenBucket:
    """Paces calls to ``rate`` per second on average, ``burst`` at once after a pause.

    The bucket holds up to ``burst`` tokens (default: one second's worth, at least
    1) and refills at ``rate`` tokens a second; each call takes one, waiting for it
    when the bucket is empty. No ``rate`` means no pacing::

        bucket = TokenBucket(rate=100, burst=20)
        await bucket.wait()
    """

    def __init__(self, rate: float | None, burst: float | None = None) -> None:
        self.rate = float(rate) if rate else 0.0
        self.burst = max(1.0, float(burst) if burst else self.rate)
        self._tokens = self.burst
        self._stamp: float | None = None
        self._lock = anyio.Lock()

    async def wait(self) -> None:
        if not self.rate:
            return
        async with self._lock:
            now = anyio.current_time()
            if self._stamp is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return
            delay = (1.0 - self._tokens) / self.rate
            self._tokens = 0.0
            self._stamp = now + delay
            await anyio.sleep(delay)
