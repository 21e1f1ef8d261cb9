"""A reward's state from its grant, its code and its expiry."""

from __future__ import annotations

import pytest

from promod.rewards.holdings import FINAL_STATES, REWARD_STATES, USABLE_STATES, reward_state

NOW = 1_790_000_000.0


@pytest.mark.parametrize(
    ("grant", "code", "coupon_redeemed", "expires_at", "expected"),
    [
        ("issued", None, False, None, "issued"),  # wallet points, a coupon not yet used
        ("issued", "assigned", False, NOW + 1, "issued"),
        ("issued", "assigned", False, NOW, "expired"),  # the sweep has not run yet
        ("issued", None, False, NOW - 1, "expired"),  # a partner voucher past its expiry
        ("issued", "expired", False, None, "expired"),
        ("issued", "revoked", False, None, "revoked"),
        ("issued", "redeemed", False, NOW - 1, "redeemed"),  # redeemed before it expired
        ("issued", None, True, NOW - 1, "redeemed"),  # a campaign coupon redeemed
        ("reserved", None, False, None, "reserved"),  # the partner has not answered yet
    ],
)
def test_the_state_of_a_reward(
    grant: str, code: str | None, coupon_redeemed: bool, expires_at: float | None, expected: str
) -> None:
    assert reward_state(grant, code, coupon_redeemed, expires_at, NOW) == expected


def test_usable_and_final_states_split_every_state() -> None:
    assert set(USABLE_STATES) | FINAL_STATES == set(REWARD_STATES)
    assert not set(USABLE_STATES) & FINAL_STATES
