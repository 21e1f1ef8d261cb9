"""Redemption in the database: the one write transaction of a redemption attempt.

The store function of the seam behind :func:`promod.codepool.redeem.redeem`: the
source's block and rate limits are checked, the code is looked up and marked
redeemed, and the attempt is recorded, all in the caller's
:class:`~promod.store.seam.Transaction` (see :mod:`promod.codepool.redeem`)::

    result = redeem_sync(tx, "XMAS-7KQ2-MZ9P", "c42", "203.0.113.9", fraud, now)
"""

from __future__ import annotations

from typing import Any

from promod.codepool.redeem_rules import HOUR, MAX_INPUT, RedemptionResult, source_of
from promod.config import FraudConfig
from promod.notify.outbox import enqueue_sync
from promod.store.seam import Transaction

__all__ = ["redeem_sync"]


def _count(tx: Transaction, sql: str, params: dict[str, Any]) -> int:
    return int(tx.fetch_value(sql, params, 0))


def redeem_sync(
    tx: Transaction,
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
    block = tx.fetch_value(
        "SELECT until FROM redemption_blocks WHERE source = :source", {"source": source}
    )
    if block is not None and float(block) > now:
        return RedemptionResult(False, "blocked")
    since = now - HOUR
    if (
        _count(
            tx,
            "SELECT count(*) FROM redemption_attempts WHERE source = :source AND ts > :since",
            {"source": source, "since": since},
        )
        >= fraud.redemptions_per_ip_per_hour
        or _count(
            tx,
            "SELECT count(*) FROM redemption_attempts WHERE customer_id = :customer"
            " AND ts > :since",
            {"customer": customer_id, "since": since},
        )
        >= fraud.redemptions_per_customer_per_hour
    ):
        return RedemptionResult(False, "rate_limited")

    result = _redeem_code(tx, code.strip() if isinstance(code, str) else "", customer_id, ip, now)
    tx.execute(
        "INSERT INTO redemption_attempts (ts, source, customer_id, ok)"
        " VALUES (:now, :source, :customer, :ok)",
        {"now": now, "source": source, "customer": customer_id, "ok": int(result.redeemed)},
    )
    if not result.redeemed:
        # Failures before the end of an earlier block were already punished.
        counted_from = max(since, float(block) if block is not None else since)
        failures = _count(
            tx,
            "SELECT count(*) FROM redemption_attempts WHERE source = :source AND ts > :since"
            " AND ok = 0",
            {"source": source, "since": counted_from},
        )
        if failures >= fraud.failed_redemptions_per_ip_per_hour:
            until = now + fraud.block_for
            tx.execute(
                tx.dialect.upsert(
                    "redemption_blocks",
                    ("source", "blocked_at", "until", "failures"),
                    ("source",),
                    {
                        "blocked_at": "excluded.blocked_at",
                        "until": "excluded.until",
                        "failures": "excluded.failures",
                    },
                ),
                {"source": source, "blocked_at": now, "until": until, "failures": failures},
            )
            enqueue_sync(
                tx,
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


def _record(tx: Transaction, code_id: int, customer_id: str, ip: str, now: float) -> None:
    tx.execute(
        "INSERT INTO code_redemptions (code_id, customer_id, ip, redeemed_at)"
        " VALUES (:code, :customer, :ip, :now)",
        {"code": code_id, "customer": customer_id, "ip": ip, "now": now},
    )


def _redeem_code(
    tx: Transaction, code: str, customer_id: str, ip: str, now: float
) -> RedemptionResult:
    if not code or len(code) > MAX_INPUT:
        return RedemptionResult(False, "invalid_code")
    rows = tx.fetch_all(
        "SELECT id, state, customer_id, max_uses, uses, expires_at FROM codes WHERE code = :code",
        {"code": code},
    )
    owned = [r for r in rows if r[2] == customer_id and int(r[3]) == 1]
    shared = [r for r in rows if int(r[3]) > 1]
    if not owned:
        coupon = _redeem_coupon(tx, code, customer_id, ip, now)
        if coupon is not None:
            return coupon
    if owned:
        code_id, state, expires_at = int(owned[0][0]), str(owned[0][1]), owned[0][5]
        if state == "assigned" and expires_at is not None and float(expires_at) <= now:
            return RedemptionResult(False, "expired")
        if state != "assigned":
            return RedemptionResult(False, {"redeemed": "already_redeemed"}.get(state, state))
        changed = tx.execute(
            "UPDATE codes SET state = 'redeemed', uses = 1, redeemed_at = :now"
            " WHERE id = :id AND state = 'assigned'",
            {"now": now, "id": code_id},
        )
        if changed != 1:
            return RedemptionResult(False, "already_redeemed")
        _record(tx, code_id, customer_id, ip, now)
        return RedemptionResult(True, None)
    if shared:
        row = shared[0]
        code_id, state, max_uses, uses, expires_at = (
            int(row[0]),
            str(row[1]),
            int(row[3]),
            int(row[4]),
            row[5],
        )
        if state in ("revoked", "expired"):
            return RedemptionResult(False, state)
        if expires_at is not None and float(expires_at) <= now:
            return RedemptionResult(False, "expired")
        mine = tx.fetch_one(
            "SELECT 1 FROM code_redemptions WHERE code_id = :code AND customer_id = :customer",
            {"code": code_id, "customer": customer_id},
        )
        if mine is not None:
            return RedemptionResult(False, "already_redeemed")
        if uses >= max_uses:
            return RedemptionResult(False, "exhausted")
        changed = tx.execute(
            "UPDATE codes SET uses = uses + 1, redeemed_at = :now,"
            " state = CASE WHEN uses + 1 >= max_uses THEN 'redeemed' ELSE state END"
            " WHERE id = :id AND state = 'available' AND uses < max_uses",
            {"now": now, "id": code_id},
        )
        if changed != 1:
            return RedemptionResult(False, "exhausted")
        _record(tx, code_id, customer_id, ip, now)
        return RedemptionResult(True, None)
    return RedemptionResult(False, "invalid_code")


def _redeem_coupon(
    tx: Transaction, code: str, customer_id: str, ip: str, now: float
) -> RedemptionResult | None:
    """Redeem a shared coupon code (the ``coupon`` provider) granted to ``customer_id``.

    Each issued coupon grant is redeemable once: the oldest one not yet redeemed and
    not expired is used. None when the code was never granted to this customer as a
    coupon (the caller then tries the code pools).
    """
    grants = tx.fetch_all(
        "SELECT g.id, g.campaign_id, g.expires_at, cr.grant_id IS NOT NULL"
        " FROM grants g LEFT JOIN coupon_redemptions cr ON cr.grant_id = g.id"
        " WHERE g.customer_id = :customer AND g.code = :code AND g.provider = 'coupon'"
        " AND g.state = 'issued' ORDER BY g.id",
        {"customer": customer_id, "code": code},
    )
    if not grants:
        return None
    open_grants = [g for g in grants if not g[3]]
    if not open_grants:
        return RedemptionResult(False, "already_redeemed")
    usable = [g for g in open_grants if g[2] is None or float(g[2]) > now]
    if not usable:
        return RedemptionResult(False, "expired")
    tx.execute(
        "INSERT INTO coupon_redemptions (grant_id, campaign_id, customer_id, code, ip, redeemed_at)"
        " VALUES (:grant, :campaign, :customer, :code, :ip, :now)",
        {
            "grant": int(usable[0][0]),
            "campaign": str(usable[0][1]),
            "customer": customer_id,
            "code": code,
            "ip": ip,
            "now": now,
        },
    )
    return RedemptionResult(True, None)
