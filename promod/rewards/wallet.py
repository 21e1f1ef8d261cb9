"""The built-in ``wallet_points`` provider: points on promod's own per-customer wallet.

A grant appends one transaction to the append-only ``wallet_transactions`` table
inside the grant's own transaction (the balance follows by trigger), so points
and grant commit together or not at all. ``amount`` is a whole number of points.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from promod.rewards.provider import GrantRequest, IssuedReward
from promod.schema import Model


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

    def available(self, conn: sqlite3.Connection, options: Mapping[str, Any]) -> int | None:
        return None  # points never run out; budgets cap them

    def issue_batch(
        self, conn: sqlite3.Connection, grants: Sequence[GrantRequest], now: float
    ) -> list[IssuedReward]:
        conn.executemany(
            "INSERT INTO wallet_transactions (customer_id, points, grant_id, reason, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [(g.customer_id, points(g), g.id, f"campaign:{g.campaign_id}", now) for g in grants],
        )
        # The wallet transaction carries the grant id: no reference to write back.
        return [IssuedReward() for _ in grants]

    def revoke_sync(self, conn: sqlite3.Connection, grant: GrantRequest) -> None:
        conn.execute(
            "INSERT INTO wallet_transactions (customer_id, points, grant_id, reason, created_at)"
            " VALUES (?, ?, NULL, ?, strftime('%s', 'now'))",
            (grant.customer_id, -points(grant), f"revoke:{grant.id}"),
        )
