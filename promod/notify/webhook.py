"""The built-in ``webhook`` channel: signed JSON POSTs to the site's backend (httpx).

Options (the :class:`WebhookOptions` model): url, secret or secret_env, timeout. The
body is the event (``{"event_id", "type", "occurred_at", ...}``); headers:

- ``Promod-Event-Id``: the stable event id (the same on every retry: dedupe on it);
- ``Promod-Signature: t=UNIX,v1=HEX``: HMAC-SHA256 of ``f"{t}.{body}"`` under the secret.

2xx is delivered; network errors, timeouts, 5xx and 429 are retried (a
``Retry-After`` in seconds or HTTP date is honoured); any other status is a
permanent failure (dead letter). The secret is never logged::

    channel = WebhookChannelType().create("backend", config.channels["backend"].options)
    await channel.send(message)
    verify_signature(secret, request.headers["Promod-Signature"], body)   # receiver side
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from pydantic import ValidationInfo

from promod import __version__
from promod.notify.channel import (
    Channel,
    ChannelError,
    Message,
    PermanentFailure,
    TemporaryFailure,
)
from promod.schema import Duration, EnvName, HttpUrlText, Model, NonEmpty, Problems

__all__ = [
    "WebhookChannel",
    "WebhookChannelType",
    "WebhookOptions",
    "parse_retry_after",
    "sign",
    "verify_signature",
]

MAX_RETRY_AFTER = 86400.0


class WebhookOptions(Model):
    """``[channels.NAME]`` of ``type = "webhook"``: where to POST, and the signing secret."""

    url: HttpUrlText
    secret: NonEmpty | None = None
    secret_env: EnvName | None = None
    timeout: Duration = 10.0

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: WebhookOptions | None, info: ValidationInfo
    ) -> Problems:
        if "secret" in raw and "secret_env" in raw:
            return [(("secret_env",), "set only one of secret and secret_env")]
        if "secret" not in raw and "secret_env" not in raw:
            return [((), "set secret or secret_env: webhooks are signed with it")]
        return []


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``Promod-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: bytes, header: str, body: bytes, *, tolerance: float = 300.0, now: float | None = None
) -> bool:
    """True when ``header`` signs ``body`` and its time is within ``tolerance`` seconds."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    moment = time.time() if now is None else now
    if abs(moment - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    moment = time.time() if now is None else now
    return min(max(0.0, when - moment), MAX_RETRY_AFTER)


class WebhookChannel:
    """POSTs each message's event body to one URL, signed."""

    concurrency = 8

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.url = str(options.get("url") or "")
        if not self.url.startswith(("http://", "https://")):
            raise ChannelError(f"channel {name!r}: url must be http(s)")
        secret = options.get("secret")
        env = options.get("secret_env")
        if env:
            secret = os.environ.get(str(env))
            if not secret:
                raise ChannelError(f"channel {name!r}: environment variable {env} is not set")
        if not secret:
            raise ChannelError(f"channel {name!r}: set secret or secret_env")
        self._secret = str(secret).encode()
        self.timeout = float(options.get("timeout") or 10.0)
        rate = options.get("rate")
        self.rate: float | None = float(rate) if rate else None
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=self.concurrency),
            headers={"User-Agent": f"promod/{__version__}"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"<WebhookChannel {self.name!r} {self.url}>"

    async def send(self, message: Message) -> None:
        body = json.dumps(dict(message.data), separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "Promod-Event-Id": message.event_id,
            "Promod-Event-Type": message.type,
            "Promod-Signature": sign(self._secret, body, int(time.time())),
        }
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise TemporaryFailure(f"webhook timeout: {type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            raise TemporaryFailure(f"webhook: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        reason = f"webhook answered {status}"
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise TemporaryFailure(reason, retry_after=retry_after)
        raise PermanentFailure(reason)

    async def close(self) -> None:
        await self._client.aclose()


class WebhookChannelType:
    """Factory registered as channel type ``webhook``."""

    type = "webhook"
    options_model = WebhookOptions

    def create(self, name: str, options: Mapping[str, Any]) -> Channel:
        return WebhookChannel(name, options)
