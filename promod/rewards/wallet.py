"""The built-in ``wallet_points`` provider: points on promod's own per-customer wallet.

A grant appends one transaction to the append-only wallet ledger inside the
grant's own transaction (:func:`promod.rewards.store.credit_wallets`; the balance
follows), so points and grant commit together or not at all. ``amount`` is a whole
number of points.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from promod.rewards.provider import GrantRequest, IssuedReward
from promod.rewards.store import credit_wallets
from promod.schema import Model
from promod.store.seam import Transaction


class WalletPointsOptions(Model):
    """A wallet_points reward takes no keys of its own: ``amount`` is the points."""


def points(grant: GrantRequest) -> int:
    if grant.amount_minor is None:
        raise ValueError("wallet_points needs an amount")
    scale = 10**grant.amount_exponent
    if grant.amount_minor % scale:
        raise ValueError("wallet_points amounts are whole points")
    return int(grant.amount_minor // scale)


class WalletPoints:
    """Adds ``reward.amount`` points to the customer's wallet."""

    name = "wallet_points"
    options_model = WalletPointsOptions
    requires_amount = True
    transactional = True

    def available(self, tx: Transaction, options: Mapping[str, Any]) -> int | None:
        return None  # points never run out; budgets cap them

    def issue_batch(
        self, tx: Transaction, grants: Sequence[GrantRequest], now: float
    ) -> list[IssuedReward]:
        credit_wallets(
            tx,
            [(g.customer_id, points(g), g.id, f"campaign:{g.campaign_id}") for g in grants],
            now=now,
        )
        # The wallet transaction carries the grant id: no reference to write back.
        return [IssuedReward() for _ in grants]

    def revoke_sync(self, tx: Transaction, grant: GrantRequest) -> None:
        credit_wallets(
            tx, [(grant.customer_id, -points(grant), None, f"revoke:{grant.id}")], now=time.time()
        )
