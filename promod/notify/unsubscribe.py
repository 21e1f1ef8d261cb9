"""Unsubscribe links and the suppression list.

Every campaign message carries ``List-Unsubscribe`` (RFC 2369) and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058) pointing at
``{http.public_url}/v1/unsubscribe?token=TOKEN``. The token names the customer
and the consent the message relied on, signed with HMAC-SHA256 under a key kept
in the ``meta`` table (``unsubscribe_key``, made on first use), so links keep
working across restarts and cannot be forged for another customer::

    key = unsubscribe_key_sync(conn)
    token = make_unsubscribe_token(key, "c42", "marketing_email")
    verify_unsubscribe_token(key, token)          # ("c42", "marketing_email")
    record_unsubscribe_sync(conn, "c42", "marketing_email", now=time.time())

A preference page link (``/v1/preferences?token=TOKEN``, in every message's footer)
carries a token of :func:`make_preferences_token`, signed under a key derived from
the same one, so neither kind of token passes for the other.

``record_unsubscribe_sync`` withdraws the consent (time and source recorded in
``customer_consents``) and suppresses the customer's address. Bounces are
recorded with :func:`suppress_sync` (reason ``bounced``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from promod.notify import store
from promod.notify.store import as_tx
from promod.store.seam import Transaction

__all__ = [
    "SUPPRESSION_REASONS",
    "InvalidToken",
    "is_suppressed_sync",
    "make_preferences_token",
    "make_unsubscribe_token",
    "preferences_url",
    "record_unsubscribe_sync",
    "suppress_sync",
    "unsubscribe_key_sync",
    "unsubscribe_url",
    "verify_preferences_token",
    "verify_unsubscribe_token",
]

META_KEY = "unsubscribe_key"
SUPPRESSION_REASONS = ("bounced", "unsubscribed", "complained", "manual")


class InvalidToken(ValueError):
    """An unsubscribe token that is malformed or not signed with this daemon's key."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_unsubscribe_token(key: bytes, customer_id: str, consent: str | None) -> str:
    """``PAYLOAD.SIGNATURE`` (URL-safe); the payload holds customer id and consent."""
    payload = json.dumps([customer_id, consent], separators=(",", ":")).encode()
    body = _b64(payload)
    sig = hmac.new(key, body.encode(), hashlib.sha256).digest()[:16]
    return f"{body}.{_b64(sig)}"


def verify_unsubscribe_token(key: bytes, token: str) -> tuple[str, str | None]:
    """``(customer_id, consent)`` of a genuine token; InvalidToken otherwise."""
    body, dot, sig = token.partition(".")
    if not dot or not body or not sig:
        raise InvalidToken("malformed unsubscribe token")
    expected = hmac.new(key, body.encode(), hashlib.sha256).digest()[:16]
    try:
        given = _unb64(sig)
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken("malformed unsubscribe token") from None
    if not hmac.compare_digest(expected, given):
        raise InvalidToken("unsubscribe token signature does not match")
    if (
        not isinstance(payload, list)
        or len(payload) != 2
        or not isinstance(payload[0], str)
        or not (payload[1] is None or isinstance(payload[1], str))
    ):
        raise InvalidToken("malformed unsubscribe token")
    return payload[0], payload[1]


def unsubscribe_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/v1/unsubscribe?token={quote(token, safe='')}"


def _preferences_key(key: bytes) -> bytes:
    """A key of its own for preference links: one never passes for an unsubscribe link."""
    return hmac.new(key, b"promod preferences link", hashlib.sha256).digest()


def make_preferences_token(key: bytes, customer_id: str) -> str:
    """The signed token of a customer's preference page link (``PAYLOAD.SIGNATURE``)."""
    return make_unsubscribe_token(_preferences_key(key), customer_id, None)


def verify_preferences_token(key: bytes, token: str) -> str:
    """The customer id of a genuine preference token; InvalidToken otherwise."""
    customer_id, rest = verify_unsubscribe_token(_preferences_key(key), token)
    if rest is not None:
        raise InvalidToken("malformed preferences token")
    return customer_id


def preferences_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/v1/preferences?token={quote(token, safe='')}"


def unsubscribe_key_sync(conn: Transaction | Any) -> bytes:
    """The daemon's unsubscribe HMAC key (32 random bytes in ``meta``, made once)."""
    tx = as_tx(conn)
    value = store.meta_value(tx, META_KEY)
    if value is None:
        store.meta_insert_new(tx, META_KEY, secrets.token_hex(32))
        value = store.meta_value(tx, META_KEY)
        assert value is not None
    return bytes.fromhex(value)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def suppress_sync(
    conn: Transaction | Any,
    address: str,
    reason: str,
    *,
    source: str,
    now: float,
    customer_id: str | None = None,
    detail: str | None = None,
) -> None:
    """Add (or refresh) ``address`` on the suppression list."""
    if reason not in SUPPRESSION_REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}")
    store.upsert_suppression(
        as_tx(conn),
        {
            "address": address.strip().lower(),
            "reason": reason,
            "source": source,
            "customer_id": customer_id,
            "detail": detail,
            "created_at": now,
        },
    )


def is_suppressed_sync(
    conn: Transaction | Any, address: str, customer_id: str | None, consent: str | None
) -> str | None:
    """The suppression reason for ``address``, or None when a message may go there.

    An ``unsubscribed`` entry no longer counts once ``consent`` was granted again
    after it.
    """
    tx = as_tx(conn)
    found = store.suppression(tx, address.strip().lower())
    if found is None:
        return None
    reason, created_at = found
    if reason == "unsubscribed" and customer_id and consent:
        granted = store.consent_row(tx, customer_id, consent)
        if granted is not None and granted[0] and str(granted[1]) > _iso(created_at):
            return None
    return reason


def record_unsubscribe_sync(
    conn: Transaction | Any,
    customer_id: str,
    consent: str | None,
    *,
    now: float,
    source: str = "unsubscribe",
) -> bool:
    """Withdraw ``consent`` and suppress the customer's address; False if no such customer.

    Idempotent: a second click changes nothing but the suppression's time.
    """
    tx = as_tx(conn)
    if not store.customer_exists(tx, customer_id):
        return False
    email = store.customer_email(tx, customer_id)
    if consent:
        store.set_consent(tx, customer_id, consent, False, at=_iso(now), source=source)
    if email:
        suppress_sync(
            tx,
            email,
            "unsubscribed",
            source=source,
            now=now,
            customer_id=customer_id,
            detail=consent,
        )
    return True
