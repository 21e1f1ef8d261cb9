"""The code pool's numbers in a campaign report: issued codes, redemptions, redemption rate.

section = codes_report(conn, "xmas-2026")
# {"issued_codes": 1200, "redemptions": 300, "redemption_rate": 0.25}, or {} without codes
"""

from __future__ import annotations

from promod.codepool.store import codes_report

__all__ = ["codes_report"]
