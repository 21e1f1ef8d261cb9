"""The built-in ``coupon`` provider: one shared code, named in the campaign spec.

Every customer of the campaign receives the same ``reward.code``; nothing is
stored besides the grant itself (its ``code``), so it never runs out (caps limit
it). Each issued grant can be redeemed once by its customer
(:mod:`promod.codepool.redeem`, recorded in ``coupon_redemptions``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from promod.campaigns.spec_values import Text
from promod.rewards.provider import GrantRequest, IssuedReward
from promod.schema import Model
from promod.store.seam import Transaction


class CouponOptions(Model):
    """A coupon reward: the one ``code`` every customer gets."""

    code: Text


class Coupon:
    """Hands out ``reward.code``."""

    name = "coupon"
    options_model = CouponOptions
    transactional = True

    def available(self, tx: Transaction, options: Mapping[str, Any]) -> int | None:
        return None

    def issue_batch(
        self, tx: Transaction, grants: Sequence[GrantRequest], now: float
    ) -> list[IssuedReward]:
        return [IssuedReward(code=str(g.options["code"])) for g in grants]

    def revoke_sync(self, tx: Transaction, grant: GrantRequest) -> None:
        """A shared code cannot be taken back from one customer; nothing to do."""
