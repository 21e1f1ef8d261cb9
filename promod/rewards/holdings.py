"""What a customer holds: every reward granted to them, with the reward's real state.

A grant row says whether the ledger issued a reward; what became of the reward
afterwards lives elsewhere: a unique code in ``codes`` (redeemed, revoked, expired),
a shared coupon's redemption in ``coupon_redemptions``, an expiry on the grant. This
module joins them into one state per reward, for ``GET /v1/customers/{id}/rewards``
and ``promodctl customers show``::

    held = customer_rewards_sync(tx, "c42", now=clock.now())                 # usable ones
    held = customer_rewards_sync(tx, "c42", now=now, states=REWARD_STATES)   # all
    [(r.grant_id, r.state) for r in held]      # [(7, "issued"), (9, "redeemed"), ...]

States: ``reserved`` (granted, the provider has not issued it yet), ``issued``
(usable), ``redeemed``, ``revoked`` and ``expired``; the last three are final: the
reward can no longer be used. A failed grant is no reward and never listed.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from promod.campaigns.spec import currency_exponent
from promod.ledger.store import as_transaction
from promod.rewards.store import customer_grants
from promod.store.seam import Row, Transaction
from promod.units import format_money

__all__ = [
    "FINAL_STATES",
    "REWARD_STATES",
    "USABLE_STATES",
    "HeldReward",
    "customer_rewards_sync",
    "reward_state",
]

REWARD_STATES = ("reserved", "issued", "redeemed", "revoked", "expired")
FINAL_STATES = frozenset({"redeemed", "revoked", "expired"})
USABLE_STATES = tuple(s for s in REWARD_STATES if s not in FINAL_STATES)


@dataclass(frozen=True)
class HeldReward:
    """One reward of a customer; times are unix seconds."""

    grant_id: int
    campaign_id: str
    run_id: int
    provider: str
    state: str
    amount: str | None
    value: str
    currency: str | None
    code: str | None
    granted_at: float
    issued_at: float | None
    expires_at: float | None
    redeemed_at: float | None
    ended_at: float | None  # when it was revoked or expired, if known


def reward_state(
    grant_state: str,
    code_state: str | None,
    coupon_redeemed: bool,
    expires_at: float | None,
    now: float,
) -> str:
    """The state of one reward from its grant, its code and its expiry (see the module)."""
    if grant_state != "issued":
        return grant_state
    if code_state == "redeemed" or coupon_redeemed:
        return "redeemed"
    if code_state == "revoked":
        return "revoked"
    if code_state == "expired" or (expires_at is not None and expires_at <= now):
        return "expired"
    return "issued"


def _amount_exponent(spec_text: str | None, provider: str) -> int | None:
    """Decimal places of a grant's amount, read from the campaign version's reward table."""
    if not spec_text:
        return None
    try:
        reward = json.loads(spec_text).get("reward") or {}
    except (ValueError, AttributeError):
        return None
    for table in (reward, reward.get("fallback") or {}):
        amount = table.get("amount")
        if table.get("provider") == provider and isinstance(amount, str):
            _, _, fraction = amount.partition(".")
            return len(fraction)
    return None


def _held(row: Row, now: float) -> HeldReward:
    amount: str | None = None
    if row["amount_minor"] is not None:
        exponent = _amount_exponent(row["spec"], row["provider"])
        if exponent is None:
            exponent = 0 if row["currency"] is None else currency_exponent(row["currency"])
        amount = format_money(int(row["amount_minor"]), exponent)
    expires_at = None if row["expires_at"] is None else float(row["expires_at"])
    state = reward_state(
        str(row["state"]),
        row["code_state"],
        row["coupon_redeemed_at"] is not None,
        expires_at,
        now,
    )
    redeemed_at = row["coupon_redeemed_at"] or row["code_redeemed_at"]
    ended_at = row["ended_at"]
    if state == "expired" and ended_at is None:
        ended_at = expires_at  # the sweep has not marked it yet: it ended when it expired
    return HeldReward(
        grant_id=int(row["id"]),
        campaign_id=str(row["campaign_id"]),
        run_id=int(row["run_id"]),
        provider=str(row["provider"]),
        state=state,
        amount=amount,
        value=format_money(int(row["value_minor"]), currency_exponent(row["currency"])),
        currency=row["currency"],
        code=row["code"],
        granted_at=float(row["created_at"]),
        issued_at=None if row["issued_at"] is None else float(row["issued_at"]),
        expires_at=expires_at,
        redeemed_at=None if redeemed_at is None or state != "redeemed" else float(redeemed_at),
        ended_at=None if ended_at is None or state not in ("revoked", "expired") else ended_at,
    )


def customer_rewards_sync(
    conn: Transaction | Any,
    customer_id: str,
    *,
    now: float,
    states: Collection[str] | None = None,
) -> list[HeldReward]:
    """The customer's rewards in ``states``, oldest first; None: every one not final."""
    if states is not None:
        unknown = set(states) - set(REWARD_STATES)
        if unknown:
            raise ValueError(f"unknown reward state {sorted(unknown)[0]!r}")
    held = (_held(row, now) for row in customer_grants(as_transaction(conn), customer_id))
    if states is None:
        return [r for r in held if r.state not in FINAL_STATES]
    return [r for r in held if r.state in states]
