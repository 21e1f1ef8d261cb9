"""Redeeming a code for a customer, atomically and within the ``[fraud]`` limits.

A redemption is one write transaction: the source's block and rate limits are
checked, the code is looked up and marked redeemed, and the attempt is recorded,
so fifty concurrent attempts on one code give exactly one success. A failed
lookup answers ``invalid_code`` whether the code does not exist or belongs to
another customer. A shared coupon code (the ``coupon`` provider's ``reward.code``)
is redeemable by each customer it was granted to, once per issued grant (so as often
as the campaign's caps let it be granted to them), recorded in ``coupon_redemptions``.
Too many failures from one source (an IP; IPv6 by its /64) block it for
``block_for`` and emit ``fraud.suspected`` once per block::

    result = await redeem(app, "XMAS-7KQ2-MZ9P", "c42", "203.0.113.9", app.config.fraud, now)
    result.redeemed, result.reason       # True, None  /  False, "invalid_code"

Reasons: ``invalid_code``, ``expired``, ``revoked``, ``already_redeemed``,
``exhausted`` (a shared coupon used up), ``rate_limited``, ``blocked``.
"""

from __future__ import annotations

import ipaddress
import sqlite3
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from promod.config import FraudConfig
from promod.notify.outbox import enqueue_sync
from promod.store.database import Database

__all__ = ["REASONS", "RedemptionResult", "redeem", "redeem_sync", "source_of"]

REASONS = (
    "invalid_code",
    "expired",
    "revoked",
    "already_redeemed",
    "exhausted",
    "rate_limited",
    "blocked",
)
HOUR = 3600.0
MAX_INPUT = 256


@dataclass(frozen=True)
class RedemptionResult:
    redeemed: bool
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"redeemed": self.redeemed, "reason": self.reason}


def source_of(ip: str) -> str:
    """The rate-limited source of a client address: the IPv4 address, or the IPv6 /64."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        raise ValueError(f"{ip!r} is not an IP address") from None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{addr}/64", strict=False))
    return str(addr)


def _count(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    return int(conn.execute(sql, params).fetchone()[0])


def redeem_sync(
    conn: sqlite3.Connection,
    code: str,
    customer_id: str,
    ip: str,
    fraud: FraudConfig,
    now: float,
) -> RedemptionResult:
    """The redemption transaction (see the module docstring); ValueError for a bad ip."""
    source = source_of(ip)
    if not isinstance(customer_id, str) or not customer_id or len(customer_id) > MAX_INPUT:
        raise ValueError("customer_id must be a non-empty string")
    block = conn.execute(
        "SELECT until FROM redemption_blocks WHERE source = ?", (source,)
    ).fetchone()
    if block is not None and float(block[0]) > now:
        return RedemptionResult(False, "blocked")
    since = now - HOUR
    if (
        _count(
            conn,
            "SELECT count(*) FROM redemption_attempts WHERE source = ? AND ts > ?",
            (source, since),
        )
        >= fraud.redemptions_per_ip_per_hour
        or _count(
            conn,
            "SELECT count(*) FROM redemption_attempts WHERE customer_id = ? AND ts > ?",
            (customer_id, since),
        )
        >= fraud.redemptions_per_customer_per_hour
    ):
        return RedemptionResult(False, "rate_limited")

    result = _redeem_code(conn, code.strip() if isinstance(code, str) else "", customer_id, ip, now)
    conn.execute(
        "INSERT INTO redemption_attempts (ts, source, customer_id, ok) VALUES (?, ?, ?, ?)",
        (now, source, customer_id, int(result.redeemed)),
    )
    if not result.redeemed:
        # Failures before the end of an earlier block were already punished.
        counted_from = max(since, float(block[0]) if block is not None else since)
        failures = _count(
            conn,
            "SELECT count(*) FROM redemption_attempts WHERE source = ? AND ts > ? AND ok = 0",
            (source, counted_from),
        )
        if failures >= fraud.failed_redemptions_per_ip_per_hour:
            until = now + fraud.block_for
            conn.execute(
                "INSERT INTO redemption_blocks (source, blocked_at, until, failures)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET"
                " blocked_at = excluded.blocked_at, until = excluded.until,"
                " failures = excluded.failures",
                (source, now, until, failures),
            )
            enqueue_sync(
                conn,
                "fraud.suspected",
                {
                    "reason": "failed_redemptions",
                    "source": source,
                    "ip": ip,
                    "customer_id": customer_id,
                    "failures": failures,
                    "window_seconds": HOUR,
                    "blocked_until": until,
                },
                now=now,
            )
    return result


def _redeem_code(
    conn: sqlite3.Connection, code: str, customer_id: str, ip: str, now: float
) -> RedemptionResult:
    if not code or len(code) > MAX_INPUT:
        return RedemptionResult(False, "invalid_code")
    rows = conn.execute(
        "SELECT id, state, customer_id, max_uses, uses, expires_at FROM codes WHERE code = ?",
        (code,),
    ).fetchall()
    owned = [r for r in rows if r[2] == customer_id and int(r[3]) == 1]
    shared = [r for r in rows if int(r[3]) > 1]
    if not owned:
        coupon = _redeem_coupon(conn, code, customer_id, ip, now)
        if coupon is not None:
            return coupon
    if owned:
        code_id, state, _cust, _max, _uses, expires_at = owned[0]
        if state == "assigned" and expires_at is not None and float(expires_at) <= now:
            return RedemptionResult(False, "expired")
        if state != "assigned":
            return RedemptionResult(
                False, {"redeemed": "already_redeemed"}.get(str(state), str(state))
            )
        cursor = conn.execute(
            "UPDATE codes SET state = 'redeemed', uses = 1, redeemed_at = ?"
            " WHERE id = ? AND state = 'assigned'",
            (now, code_id),
        )
        if cursor.rowcount != 1:
            return RedemptionResult(False, "already_redeemed")
        conn.execute(
            "INSERT INTO code_redemptions (code_id, customer_id, ip, redeemed_at)"
            " VALUES (?, ?, ?, ?)",
            (code_id, customer_id, ip, now),
        )
        return RedemptionResult(True, None)
    if shared:
        code_id, state, _cust, max_uses, uses, expires_at = shared[0]
        if state in ("revoked", "expired"):
            return RedemptionResult(False, str(state))
        if expires_at is not None and float(expires_at) <= now:
            return RedemptionResult(False, "expired")
        mine = conn.execute(
            "SELECT 1 FROM code_redemptions WHERE code_id = ? AND customer_id = ?",
            (code_id, customer_id),
        ).fetchone()
        if mine is not None:
            return RedemptionResult(False, "already_redeemed")
        if int(uses) >= int(max_uses):
            return RedemptionResult(False, "exhausted")
        cursor = conn.execute(
            "UPDATE codes SET uses = uses + 1, redeemed_at = ?,"
            " state = CASE WHEN uses + 1 >= max_uses THEN 'redeemed' ELSE state END"
            " WHERE id = ? AND state = 'available' AND uses < max_uses",
            (now, code_id),
        )
        if cursor.rowcount != 1:
            return RedemptionResult(False, "exhausted")
        conn.execute(
            "INSERT INTO code_redemptions (code_id, customer_id, ip, redeemed_at)"
            " VALUES (?, ?, ?, ?)",
            (code_id, customer_id, ip, now),
        )
        return RedemptionResult(True, None)
    return RedemptionResult(False, "invalid_code")


def _redeem_coupon(
    conn: sqlite3.Connection, code: str, customer_id: str, ip: str, now: float
) -> RedemptionResult | None:
    """Redeem a shared coupon code (the ``coupon`` provider) granted to ``customer_id``.

    Each issued coupon grant is redeemable once: the oldest one not yet redeemed and
    not expired is used. None when the code was never granted to this customer as a
    coupon (the caller then tries the code pools).
    """
    grants = conn.execute(
        "SELECT g.id, g.campaign_id, g.expires_at, cr.grant_id IS NOT NULL"
        " FROM grants g LEFT JOIN coupon_redemptions cr ON cr.grant_id = g.id"
        " WHERE g.customer_id = ? AND g.code = ? AND g.provider = 'coupon'"
        " AND g.state = 'issued' ORDER BY g.id",
        (customer_id, code),
    ).fetchall()
    if not grants:
        return None
    open_grants = [g for g in grants if not g[3]]
    if not open_grants:
        return RedemptionResult(False, "already_redeemed")
    usable = [g for g in open_grants if g[2] is None or float(g[2]) > now]
    if not usable:
        return RedemptionResult(False, "expired")
    grant_id, campaign_id = int(usable[0][0]), str(usable[0][1])
    conn.execute(
        "INSERT INTO coupon_redemptions (grant_id, campaign_id, customer_id, code, ip, redeemed_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (grant_id, campaign_id, customer_id, code, ip, now),
    )
    return RedemptionResult(True, None)


async def redeem(
    app_or_db: Any,
    code: str,
    customer_id: str,
    ip: str,
    fraud_config: FraudConfig | None = None,
    now: float | None = None,
) -> RedemptionResult:
    """Redeem ``code`` for ``customer_id`` from ``ip``; see :func:`redeem_sync`.

    ``app_or_db`` is the App (its ``db``; ``config.fraud`` and ``clock`` are the
    defaults of ``fraud_config`` and ``now``) or a Database. ValueError for a bad ip.
    """
    db: Database = getattr(app_or_db, "db", app_or_db)
    if fraud_config is None:
        fraud_config = getattr(getattr(app_or_db, "config", None), "fraud", None) or FraudConfig()
    if now is None:
        clock = getattr(app_or_db, "clock", None)
        now = float(clock.now()) if clock is not None else time.time()
    source_of(ip)  # a bad address is refused before the transaction
    return await db.run_sync(
        partial(redeem_sync, code=code, customer_id=customer_id, ip=ip, fraud=fraud_config, now=now)
    )
