"""The code pool's numbers in a campaign report: issued codes, redemptions, redemption rate.

section = codes_report(tx, "xmas-2026")
# {"issued_codes": 1200, "redemptions": 300, "redemption_rate": 0.25}, or {} without codes

The report builder that still holds a plain connection may pass it: it is wrapped
in the SQLite transaction of the seam (docs/architecture.md, "The store seam").
"""

from __future__ import annotations

from typing import Any

from promod.codepool import store
from promod.store.seam import TxLike, as_tx

__all__ = ["codes_report"]


def codes_report(tx: TxLike, campaign_id: str) -> dict[str, Any]:
    """See :func:`promod.codepool.store.codes_report`."""
    return store.codes_report(as_tx(tx), campaign_id)
