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

A channel may set ``rate`` (messages per second; the notifier paces sends) and
``concurrency`` (sends in flight at once; default 1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import anyio

__all__ = [
    "Channel",
    "ChannelError",
    "ChannelType",
    "DeliveryFailed",
    "Message",
    "PermanentFailure",
    "RateLimiter",
    "TemporaryFailure",
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
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Message:
        raw = json.loads(text)
        return cls(**raw)


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


class RateLimiter:
    """Paces calls to at most ``rate`` per second (no bursts)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = anyio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = anyio.current_time()
            slot = max(now, self._next)
            self._next = slot + self.interval
            if slot > now:
                await anyio.sleep(slot - now)
