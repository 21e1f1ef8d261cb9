"""The rewards' store functions: the wallet ledger and what a customer holds.

Written against the seam (:class:`promod.store.seam.Transaction`, docs/architecture.md
"The store"); the providers and :mod:`promod.rewards.holdings` call these and hold no
SQL of their own. The wallet is append-only (``wallet_transactions``, whose triggers
forbid UPDATE and DELETE) and keeps one balance per customer (``wallet_balances``):
a batch of credits adds to each balance once, in the same statement set as the
transactions, so the balance never drifts from the sum::

    credit_wallets(tx, [("c42", 500, 17, "campaign:winback")], now=now)
"""

from __future__ import annotations

from collections.abc import Sequence

from promod.store.seam import Row, Transaction


def credit_wallets(
    tx: Transaction, credits: Sequence[tuple[str, int, int | None, str]], *, now: float
) -> None:
    """Append ``(customer_id, points, grant_id, reason)`` wallet transactions.

    The balances follow by the table's trigger (``wallet_transactions_balance``):
    the sum of a customer's transactions, whoever writes them.
    """
    tx.executemany(
        "INSERT INTO wallet_transactions (customer_id, points, grant_id, reason, created_at)"
        " VALUES (:customer, :points, :grant, :reason, :now)",
        [
            {"customer": c, "points": p, "grant": g, "reason": r, "now": now}
            for c, p, g, r in credits
        ],
    )


HOLDINGS = """
SELECT g.id, g.campaign_id, g.run_id, g.provider, g.amount_minor, g.value_minor,
       g.currency, g.state, g.created_at, g.issued_at, g.code,
       coalesce(c.expires_at, g.expires_at) AS expires_at,
       c.state AS code_state, c.redeemed_at AS code_redeemed_at, c.ended_at,
       cr.redeemed_at AS coupon_redeemed_at, v.spec
FROM grants g
LEFT JOIN codes c ON c.grant_id = g.id
LEFT JOIN coupon_redemptions cr ON cr.grant_id = g.id
LEFT JOIN runs r ON r.id = g.run_id
LEFT JOIN campaign_versions v ON v.campaign_id = g.campaign_id AND v.version = r.version
WHERE g.customer_id = :customer AND g.state != 'failed'
ORDER BY g.created_at, g.id
"""


def customer_grants(tx: Transaction, customer_id: str) -> list[Row]:
    """The customer's grants that are not failed, oldest first, with what became of
    their codes and coupons and the campaign version's spec (read by column name)."""
    return tx.fetch_all(HOLDINGS, {"customer": customer_id})
