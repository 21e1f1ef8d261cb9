"""Granting a batch of due targets in one transaction: caps, reservations, rewards, events.

``grant_batch`` runs in the store's worker thread (``Database.run``) inside one
write transaction. It takes up to ``batch_size`` due targets of
one run in (due time, rank) order and, for each, checks the per-customer cap, the
site-wide frequency cap, the eligibility hook and every counter of the cap book;
then it writes the grant rows (unique per campaign, run and customer), the target
outcomes, the counters, the transactional provider's rewards and the
``reward.granted`` events — all or nothing. A crash before commit leaves no
trace; a crash after leaves the targets decided, so a restart never grants twice::

    outcome = await db.run(lambda tx: grant_batch(tx, job, now))

Every statement is one of the ledger's store functions (:mod:`promod.ledger.store`).
Per grant the batch writes the grant row (one customer-keyed index entry,
``grants_once``), the target's outcome (in rank order), the provider's reward and
the ``reward.granted`` event; counters are added once per batch.
"""

from __future__ import annotations

import json
from collections import Counter as Tally
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from promod.campaigns.spec import CampaignSpec, Reward, currency_exponent
from promod.ledger import store
from promod.ledger.caps import CapBook, Limits, Refusal
from promod.notify.outbox import enqueue_many_sync, enqueue_sync
from promod.rewards.provider import (
    GrantRequest,
    OutOfInventory,
    RewardRejected,
    is_transactional,
)
from promod.store.seam import Transaction
from promod.units import format_money

Eligibility = Callable[[str, CampaignSpec], list[str]]


@dataclass
class GrantJob:
    """What one batch needs to know about its campaign, run and the site policy."""

    campaign_id: str
    run_id: int
    spec: CampaignSpec
    providers: Mapping[str, Any]
    site_timezone: str = "UTC"
    frequency: tuple[int, int] | None = None  # (max rewards, days)
    # The policy budgets in the campaign's currency, by provider (minor units).
    provider_lifetime: dict[str, int | None] = field(default_factory=dict)
    provider_daily: dict[str, int | None] = field(default_factory=dict)
    eligibility: Eligibility | None = None
    batch_size: int = 1000
    empty_providers: frozenset[str] = frozenset()  # known out of stock: use the fallback

    def limits(self) -> Limits:
        caps = self.spec.caps
        return Limits(
            campaign_id=self.campaign_id,
            currency=self.spec.currency,
            audience=caps.audience,
            count=caps.count,
            budget=caps.budget_minor,
            daily_count=caps.daily_count,
            daily_budget=caps.daily_budget_minor,
            provider_lifetime=self.provider_lifetime,
            provider_daily=self.provider_daily,
        )


@dataclass
class BatchOutcome:
    """What a batch did, and why it stopped if it did."""

    granted: int = 0
    refused: Tally[str] = field(default_factory=Tally)
    processed: int = 0
    # kill_switch | cap | daily_cap | no_inventory | issuing (a cap is full, but some of
    # it is held by rewards still being issued: the rest wait for their outcome)
    halted: str | None = None
    cap: Refusal | None = None
    paused_until: float | None = None
    async_grants: list[int] = field(default_factory=list)
    spend: int = 0


class _Refused(Exception):
    """A transactional provider refused some customers of the batch (by customer id)."""

    def __init__(self, customers: dict[str, str]) -> None:
        super().__init__(f"{len(customers)} grants refused by the provider")
        self.customers = customers


def local_day(ts: float, tz: str) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).date().isoformat()


def next_local_midnight(ts: float, tz: str) -> float:
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(ts, zone)
    nxt = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), zone)
    return nxt.timestamp()


def candidates_sync(
    conn: Transaction | Any, job: GrantJob, ids: list[str], now: float
) -> tuple[dict[str, int], dict[str, int]]:
    """Grants so far per customer in this campaign, and in the frequency window."""
    tx = store.as_transaction(conn)
    per_customer = store.grants_per_customer(tx, job.campaign_id, ids)
    recent: dict[str, int] = {}
    if job.frequency is not None:
        recent = store.grants_since(tx, ids, now - job.frequency[1] * 86400)
    return per_customer, recent


class Decider:
    """Decides, customer by customer, in rank order, who is granted what.

    Shared by the ledger and by ``campaign simulate``, so the dry run decides
    exactly as the real run will.
    """

    def __init__(
        self,
        job: GrantJob,
        book: CapBook,
        inventory: dict[str, int | None],
        per_customer: dict[str, int],
        recent: dict[str, int],
        failed_primary: frozenset[str] = frozenset(),
    ) -> None:
        self.job = job
        self.book = book
        self.inventory = inventory
        self.per_customer = per_customer
        self.recent = recent
        self.failed_primary = failed_primary  # their main reward failed: the fallback

    def decide(self, customer_id: str) -> tuple[Reward | None, str | None, Refusal | None]:
        """(reward, refusal reason, halting cap). A halting cap stops the batch."""
        spec = self.job.spec
        had = self.per_customer.get(customer_id, 0)
        if had >= spec.caps.per_customer:
            return None, "per_customer", None
        freq = self.job.frequency
        if freq is not None and self.recent.get(customer_id, 0) >= freq[0]:
            return None, "frequency", None
        if self.job.eligibility is not None:
            reasons = self.job.eligibility(customer_id, spec)
            if reasons:
                return None, f"eligibility:{reasons[0]}", None
        reward: Reward | None = spec.reward
        if customer_id in self.failed_primary or self.inventory.get(spec.reward.provider) == 0:
            reward = spec.reward.fallback
            if reward is not None and self.inventory.get(reward.provider) == 0:
                reward = None
        if reward is None:
            return None, None, Refusal("inventory", "lifetime", "inventory", "", "")
        first = had == 0
        refusal = self.book.reserve(reward.value_minor or 0, reward.provider, first)
        if refusal is not None:
            if refusal.limit == "audience":
                return None, "audience_cap", None
            return None, None, refusal
        self.per_customer[customer_id] = had + 1
        self.recent[customer_id] = self.recent.get(customer_id, 0) + 1
        left = self.inventory.get(reward.provider)
        if left is not None:
            self.inventory[reward.provider] = left - 1
        return reward, None, None


def failed_primary_sync(tx: Transaction, job: GrantJob, ids: list[str]) -> frozenset[str]:
    """Customers of the batch whose main reward failed in this run, when the campaign has
    a fallback: they get the fallback (a reward never issued is not retried on them)."""
    if job.spec.reward.fallback is None:
        return frozenset()
    return frozenset(store.failed_in_run(tx, job.run_id, job.spec.reward.provider, ids))


def issuing_on_sync(tx: Transaction, scope: str, period: str) -> bool:
    """Some reward still being issued (reserved, not yet issued) holds part of this counter."""
    return store.reserved_on_counter(tx, scope, period)


def refusal_reason(refusal: Refusal) -> str:
    """``budget``, ``daily_count``, ``provider_budget:wallet_points`` ... for reports."""
    if refusal.cap.startswith("provider:"):
        prefix = "provider_daily_budget" if refusal.kind == "daily" else "provider_budget"
        return f"{prefix}:{refusal.cap.split(':', 1)[1]}"
    if refusal.limit == "inventory":
        return "no_inventory"
    base = {"count": "count", "spend": "budget", "audience": "audience"}[refusal.limit]
    return f"daily_{base}" if refusal.kind == "daily" else base


def _inventory(conn: Transaction | Any, job: GrantJob) -> dict[str, int | None]:
    tx = store.as_transaction(conn)
    out: dict[str, int | None] = {}
    rewards = [job.spec.reward, *([job.spec.reward.fallback] if job.spec.reward.fallback else [])]
    for reward in rewards:
        provider = job.providers.get(reward.provider)
        if reward.provider in job.empty_providers:
            out[reward.provider] = 0
        elif provider is not None and is_transactional(provider):
            out[reward.provider] = provider.available(tx, _options(reward))
        else:
            out[reward.provider] = None
    return out


def _options(reward: Reward) -> dict[str, Any]:
    options: dict[str, Any] = dict(reward.options)
    if reward.code is not None:
        options["code"] = reward.code
    if reward.pool is not None:
        options["pool"] = reward.pool
    return options


def grant_batch(conn: Transaction | Any, job: GrantJob, now: float) -> BatchOutcome:
    """Grant (or refuse) the next due targets of ``job``'s run. Call inside a transaction."""
    tx = store.as_transaction(conn)
    outcome = BatchOutcome()
    if store.killswitch_engaged(tx):
        outcome.halted = "kill_switch"
        return outcome
    rows = store.due_targets(tx, job.run_id, now, job.batch_size)
    if not rows:
        return outcome
    ids = [str(r[0]) for r in rows]
    ranks = {str(r[0]): int(r[1]) for r in rows}
    spec = job.spec
    day = local_day(now, spec.timezone)
    site_day = local_day(now, job.site_timezone)
    rewards = [spec.reward, *([spec.reward.fallback] if spec.reward.fallback else [])]
    book = CapBook(job.limits(), day, site_day).load(tx, [r.provider for r in rewards])
    per_customer, recent = candidates_sync(tx, job, ids, now)
    decider = Decider(
        job, book, _inventory(tx, job), per_customer, recent, failed_primary_sync(tx, job, ids)
    )

    granted: list[tuple[str, Reward]] = []
    refused: list[tuple[str, str]] = []
    decide = decider.decide
    for cid in ids:
        reward, reason, halt = decide(cid)
        if halt is not None:
            outcome.cap = halt
            outcome.halted = (
                "no_inventory"
                if halt.limit == "inventory"
                else ("daily_cap" if halt.kind == "daily" else "cap")
            )
            break
        if reward is None:
            assert reason is not None
            refused.append((cid, reason))
        else:
            granted.append((cid, reward))
    outcome.processed = len(granted) + len(refused)

    try:
        with tx.savepoint("grant_batch"):
            _write(tx, job, now, day, granted, refused, book, outcome, ranks)
    except _Refused as exc:
        # The provider refused some grants (a customer already holding a code of the
        # series): the batch was undone; refuse those customers, decide it again.
        store.refuse_targets(
            tx, job.run_id, now, [(ranks[cid], reason) for cid, reason in exc.customers.items()]
        )
        again = grant_batch(tx, job, now)
        again.refused.update(exc.customers.values())
        again.processed += len(exc.customers)
        return again
    except OutOfInventory:
        outcome = BatchOutcome(halted="no_inventory")
        outcome.cap = Refusal("inventory", "lifetime", "inventory", "", "")
        return outcome

    if (
        outcome.halted in ("cap", "daily_cap")
        and outcome.cap is not None
        and issuing_on_sync(tx, outcome.cap.scope, outcome.cap.period)
    ):
        # Part of the full cap is held by rewards a provider is still issuing. One that
        # is never issued gives its share back, so the rest wait for the outcome
        # instead of being refused (or the campaign paused) for a cap not really spent.
        outcome.halted = "issuing"
        return outcome
    if outcome.halted in ("cap", "daily_cap") and outcome.cap is not None:
        period = outcome.cap.period if outcome.halted == "daily_cap" else "lifetime"
        reason = refusal_reason(outcome.cap)
        enqueue_sync(
            tx,
            "cap.reached",
            {"campaign_id": job.campaign_id, "run_id": job.run_id, "cap": reason, "period": period},
            now=now,
            event_id=f"cap.reached:{job.campaign_id}:{reason}:{period}",
        )
        if outcome.halted == "daily_cap":
            tz = job.site_timezone if outcome.cap.cap.startswith("provider:") else spec.timezone
            outcome.paused_until = next_local_midnight(now, tz)
    return outcome


def _write(
    tx: Transaction,
    job: GrantJob,
    now: float,
    day: str,
    granted: list[tuple[str, Reward]],
    refused: list[tuple[str, str]],
    book: CapBook,
    outcome: BatchOutcome,
    ranks: dict[str, int],
) -> None:
    if refused:
        store.refuse_targets(tx, job.run_id, now, [(ranks[cid], reason) for cid, reason in refused])
        outcome.refused.update(reason for _, reason in refused)
    if not granted:
        return
    book.flush(tx)
    # Written in customer order: the customer-keyed B-trees (the grants' index, the
    # wallet balances) are walked once from left to right instead of at random.
    granted = sorted(granted, key=lambda item: item[0])
    currency = job.spec.currency
    transactional = {
        name
        for name in {reward.provider for _, reward in granted}
        if job.providers.get(name) is not None and is_transactional(job.providers[name])
    }
    # A reservation of a provider outside the database records the counters it booked,
    # so one never issued gives back exactly those; a transactional grant is never
    # released and records none.
    booked = {
        name: json.dumps(
            [[c.scope, c.period] for c in book.applicable(name)], separators=(",", ":")
        )
        for name in {reward.provider for _, reward in granted} - transactional
    }
    rows = []
    for cid, reward in granted:
        inside = reward.provider in transactional
        rows.append(
            (
                job.campaign_id,
                job.run_id,
                cid,
                reward.provider,
                reward.amount_minor,
                reward.value_minor or 0,
                currency,
                "issued" if inside else "reserved",
                day,
                now,
                now if inside else None,
                None if inside else now,
                booked.get(reward.provider),
                None,
                None,
            )
        )
    # The unique index refuses a second live grant per (campaign, run, customer), the
    # trigger one past the per-customer cap: either rolls the whole batch back.
    ids = store.insert_grants(tx, rows)
    store.mark_granted(tx, job.run_id, now, [ranks[cid] for cid, _ in granted])
    by_provider: dict[str, list[GrantRequest]] = {}
    for cid, reward in granted:
        by_provider.setdefault(reward.provider, []).append(
            GrantRequest(
                id=ids[cid],
                campaign_id=job.campaign_id,
                run_id=job.run_id,
                customer_id=cid,
                provider=reward.provider,
                amount_minor=reward.amount_minor,
                amount_exponent=reward.amount_exponent,
                value_minor=reward.value_minor or 0,
                currency=currency,
                options=_options(reward),
            )
        )
    events: list[tuple[str, dict[str, Any]]] = []
    for name, reqs in by_provider.items():
        if name not in transactional:
            outcome.async_grants.extend(r.id for r in reqs)
            continue
        try:
            issued = job.providers[name].issue_batch(tx, reqs, now)
        except RewardRejected as exc:
            by_id = {r.id: r.customer_id for r in reqs}
            refused_ids: dict[int, str] = dict(getattr(exc, "refused", None) or {})
            if not refused_ids:
                raise
            raise _Refused({by_id[i]: reason for i, reason in refused_ids.items()}) from exc
        updates = [
            (i.reference, i.code, i.expires_at, r.id)
            for r, i in zip(reqs, issued, strict=True)
            if i.reference is not None or i.code is not None or i.expires_at is not None
        ]
        if updates:
            store.set_grant_rewards(tx, updates)
        payload = _Payloads()
        events.extend(
            (f"reward.granted:{r.id}", payload(r, i.code, i.expires_at, i.reference))
            for r, i in zip(reqs, issued, strict=True)
        )
    if events:
        enqueue_many_sync(store.backend_connection(tx), "reward.granted", events, now=now)
    outcome.granted = len(granted)
    outcome.spend = sum(reward.value_minor or 0 for _, reward in granted)


class _Payloads:
    """``granted_payload`` for many grants, formatting each distinct amount once."""

    def __init__(self) -> None:
        self._money: dict[tuple[int | None, int, int, str | None], tuple[str | None, str]] = {}

    def __call__(
        self, r: GrantRequest, code: str | None, expires_at: float | None, reference: str | None
    ) -> dict[str, Any]:
        key = (r.amount_minor, r.amount_exponent, r.value_minor, r.currency)
        money = self._money.get(key)
        if money is None:
            money = self._money[key] = _money(r)
        return {
            "grant_id": r.id,
            "campaign_id": r.campaign_id,
            "run_id": r.run_id,
            "customer_id": r.customer_id,
            "provider": r.provider,
            "amount": money[0],
            "value": money[1],
            "currency": r.currency,
            "code": code,
            "expires_at": expires_at,
            "reference": reference,
        }


def _money(r: GrantRequest) -> tuple[str | None, str]:
    amount = None if r.amount_minor is None else format_money(r.amount_minor, r.amount_exponent)
    return amount, format_money(r.value_minor, currency_exponent(r.currency))


def granted_payload(
    r: GrantRequest, code: str | None, expires_at: float | None, reference: str | None
) -> dict[str, Any]:
    """The ``reward.granted`` event body (amounts as decimal strings)."""
    amount, value = _money(r)
    return {
        "grant_id": r.id,
        "campaign_id": r.campaign_id,
        "run_id": r.run_id,
        "customer_id": r.customer_id,
        "provider": r.provider,
        "amount": amount,
        "value": value,
        "currency": r.currency,
        "code": code,
        "expires_at": expires_at,
        "reference": reference,
    }
