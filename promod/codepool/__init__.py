"""Code pools: unique code inventory, generation, import, allocation, expiry, redemption.

The parts: :mod:`~promod.codepool.generate` (random codes), :mod:`~promod.codepool.store`
(pools, loading, lifecycle, alerts, stats, the campaign report numbers),
:mod:`~promod.codepool.imports` (all-or-nothing file imports),
:mod:`~promod.codepool.provider` (the ``code_pool`` reward provider),
:mod:`~promod.codepool.redeem` (redemption with fraud limits) and
:mod:`~promod.codepool.commands` (the admin commands)::

    from promod.codepool import codes_report
    report.update(codes_report(conn, "xmas-2026"))   # issued_codes, redemptions, redemption_rate
"""

from __future__ import annotations

from promod.codepool.provider import CodePoolProvider, PoolExhausted, SeriesDuplicate
from promod.codepool.redeem import RedemptionResult, redeem, redeem_sync
from promod.codepool.store import codes_report, expire_sync

__all__ = [
    "CodePoolProvider",
    "PoolExhausted",
    "RedemptionResult",
    "SeriesDuplicate",
    "codes_report",
    "expire_sync",
    "redeem",
    "redeem_sync",
]
