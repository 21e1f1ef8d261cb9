"""What a redemption answers, and the source its fraud limits count against.

Shared by :mod:`promod.codepool.store_redeem` (the transaction) and
:mod:`promod.codepool.redeem` (its entry point)::

    source_of("2001:db8::1")          # "2001:db8::/64"
    RedemptionResult(False, "expired").to_dict()
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

__all__ = ["HOUR", "MAX_INPUT", "REASONS", "RedemptionResult", "source_of"]

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
