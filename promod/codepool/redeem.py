"""Redeeming a code for a customer, atomically and within the ``[fraud]`` limits.

A redemption is one write transaction: the source's block and rate limits are
checked, the code is looked up and marked redeemed, and the attempt is recorded,
so fifty concurrent attempts on one code give exactly one success. A failed
lookup answers ``invalid_code`` whether the code does not exist or belongs to
another customer. A shared coupon code (the ``coupon`` provider's ``reward.code``)
is redeemable by each customer it was granted to, once per issued grant (so as often
as the campaign's caps let it be granted to them), recorded in ``coupon_redemptions``.
Too many failures from one source (an IP; IPv6 by its /64) block it for
``block_for`` and emit ``fraud.suspected`` once per block. The transaction is
:func:`promod.codepool.store_redeem.redeem_sync`::

    result = await redeem(app, "XMAS-7KQ2-MZ9P", "c42", "203.0.113.9", app.config.fraud, now)
    result.redeemed, result.reason       # True, None  /  False, "invalid_code"

Reasons: ``invalid_code``, ``expired``, ``revoked``, ``already_redeemed``,
``exhausted`` (a shared coupon used up), ``rate_limited``, ``blocked``.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING

from promod.codepool.redeem_rules import REASONS, RedemptionResult, source_of
from promod.codepool.store_redeem import redeem_sync
from promod.config import FraudConfig
from promod.store.database import Database

if TYPE_CHECKING:
    from promod.app import App

__all__ = ["REASONS", "RedemptionResult", "redeem", "redeem_sync", "source_of"]


async def redeem(
    app_or_db: App | Database,
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
    if isinstance(app_or_db, Database):
        db = app_or_db
        fraud_config = FraudConfig() if fraud_config is None else fraud_config
        now = time.time() if now is None else now
    else:
        db = app_or_db.db
        fraud_config = app_or_db.config.fraud if fraud_config is None else fraud_config
        now = float(app_or_db.clock.now()) if now is None else now
    source_of(ip)  # a bad address is refused before the transaction
    return await db.run(
        partial(redeem_sync, code=code, customer_id=customer_id, ip=ip, fraud=fraud_config, now=now)
    )
