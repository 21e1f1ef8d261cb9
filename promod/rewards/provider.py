"""The reward provider contract: what the ledger asks of a provider, and what it gets back.

Two kinds of provider exist. A *transactional* provider (wallet points, coupons,
code pools) writes its reward into promod's own database inside the grant's
transaction, so grant and reward commit or roll back together. Any other provider
(a partner's voucher API, an external wallet) is called after the grant's
reservation has committed, with the grant id as its idempotency key; a temporary
failure is retried with backoff, a permanent one releases the reservation::

    class PartnerVoucher:
        name = "partner_voucher"

        async def issue(self, grant: GrantRequest) -> IssuedReward:
            voucher = await partner.mint(idempotency_key=str(grant.id), ...)
            return IssuedReward(reference=voucher.id, code=voucher.code)

        async def revoke(self, grant: GrantRequest, reference: str | None) -> None:
            await partner.cancel(reference)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from promod.store.seam import Transaction


@dataclass(frozen=True)
class GrantRequest:
    """One grant as a provider sees it. ``id`` is the idempotency key."""

    id: int
    campaign_id: str
    run_id: int
    customer_id: str
    provider: str
    amount_minor: int | None
    amount_exponent: int
    value_minor: int
    currency: str | None
    options: Mapping[str, Any] = field(default_factory=dict)  # code, pool, plugin options


@dataclass(frozen=True)
class IssuedReward:
    """What the customer received: a reference, a code, an expiry, details to show."""

    reference: str | None = None
    code: str | None = None
    expires_at: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


class ProviderError(Exception):
    """Base of the outcomes a provider reports by raising."""


class OutOfInventory(ProviderError):
    """Nothing left to hand out: the campaign's fallback is used, else it pauses."""


class RewardRejected(ProviderError):
    """A permanent refusal for this grant: no retry, the reservation is released."""


class TemporaryFailure(ProviderError):
    """Try again later (``retry_after`` seconds, when the provider knows)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@runtime_checkable
class RewardProvider(Protocol):
    """A provider called outside the grant transaction (idempotent on ``grant.id``)."""

    name: str

    async def issue(self, grant: GrantRequest) -> IssuedReward: ...

    async def revoke(self, grant: GrantRequest, reference: str | None) -> None: ...


@runtime_checkable
class TransactionalProvider(Protocol):
    """A provider that writes its rewards inside the ledger's grant transaction.

    Its methods run in the store's worker thread with the grant's transaction open,
    handed to them as the seam's :class:`~promod.store.seam.Transaction` (``tx``:
    ``execute``, ``fetch_one``, ``fetch_all``, ``executemany``, named parameters and
    ``tx.dialect`` for what differs between backends). They must not commit, and
    raise to roll back.
    """

    name: str
    transactional: bool  # True

    def available(self, tx: Transaction, options: Mapping[str, Any]) -> int | None:
        """How many rewards can still be issued with these options; None: unlimited."""
        ...

    def issue_batch(
        self, tx: Transaction, grants: Sequence[GrantRequest], now: float
    ) -> list[IssuedReward]:
        """Issue one reward per grant, in order; the list matches ``grants``."""
        ...

    def revoke_sync(self, tx: Transaction, grant: GrantRequest) -> None:
        """Take a reward back (a released or revoked grant)."""
        ...


def is_transactional(provider: object) -> bool:
    return bool(getattr(provider, "transactional", False))
