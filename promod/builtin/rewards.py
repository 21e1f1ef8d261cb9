"""Built-in plugin: the ``wallet_points`` and ``coupon`` reward providers."""

from __future__ import annotations

from typing import Any

from promod.plugins.hookspecs import hookimpl
from promod.rewards.coupon import Coupon
from promod.rewards.wallet import WalletPoints


@hookimpl
def promod_register_reward_providers() -> list[Any]:
    return [WalletPoints(), Coupon()]
