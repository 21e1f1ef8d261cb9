"""Cap accounting: every counter a grant must fit under, checked and reserved together.

A ``CapBook`` holds the counters that apply to one campaign on one day — the
campaign's lifetime and daily counters and the site-wide policy budgets of each
reward provider in the campaign's currency (scope ``policy:<provider>:<currency>``,
so spend in one currency never counts against another's budget) — loaded from
``cap_counters``. ``reserve`` checks one grant against all of them and
books it only if every one has room; ``flush`` writes the deltas back, where the
table's CHECK constraints refuse anything that would pass a limit::

    book = CapBook(limits, day="2026-12-01", site_day="2026-12-01").load(tx, ["wallet_points"])
    refusal = book.reserve(value=500, provider="wallet_points", first=True)
    book.flush(tx)

The statements are the ledger's store functions (:mod:`promod.ledger.store`); ``tx`` is
the seam's transaction (a backend connection passed by older callers is wrapped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from promod.ledger import store
from promod.store.seam import Transaction

Kind = Literal["lifetime", "daily"]


@dataclass
class Counter:
    """One row of ``cap_counters`` with its limits and this book's pending deltas."""

    scope: str
    period: str
    cap: str  # the name shown in reports: "campaign", "campaign_daily", "provider:wallet_points"
    kind: Kind
    count: int = 0
    spend: int = 0
    customers: int = 0
    max_count: int | None = None
    max_spend: int | None = None
    max_customers: int | None = None
    d_count: int = 0
    d_spend: int = 0
    d_customers: int = 0

    def refusal(self, value: int, first: bool) -> str | None:
        """The name of the limit this grant would pass, or None."""
        if self.max_customers is not None and first:
            if self.customers + self.d_customers + 1 > self.max_customers:
                return "audience"
        if self.max_count is not None and self.count + self.d_count + 1 > self.max_count:
            return "count"
        if self.max_spend is not None and self.spend + self.d_spend + value > self.max_spend:
            return "spend"
        return None

    def book(self, value: int, first: bool) -> None:
        self.d_count += 1
        self.d_spend += value
        if first:
            self.d_customers += 1


@dataclass(frozen=True)
class Refusal:
    """Why a grant does not fit: which cap, whether lifetime or daily, which limit."""

    cap: str
    kind: Kind
    limit: str  # audience | count | spend
    scope: str
    period: str


def policy_scope(provider: str, currency: str) -> str:
    """The ``cap_counters`` scope of a provider's policy budget in one currency."""
    return f"policy:{provider}:{currency}"


@dataclass
class Limits:
    """The limits of one campaign and the policy budgets in its currency, by provider.

    ``provider_lifetime`` and ``provider_daily`` are in minor units of ``currency``;
    a campaign without a currency spends nothing a policy budget could count.
    """

    campaign_id: str
    currency: str | None = None
    audience: int | None = None
    count: int | None = None
    budget: int | None = None
    daily_count: int | None = None
    daily_budget: int | None = None
    provider_lifetime: dict[str, int | None] = field(default_factory=dict)
    provider_daily: dict[str, int | None] = field(default_factory=dict)


class CapBook:
    """The counters for one campaign, one campaign-local day and one site day."""

    def __init__(self, limits: Limits, day: str, site_day: str) -> None:
        self.limits = limits
        self.day = day
        self.site_day = site_day
        self.counters: dict[tuple[str, str], Counter] = {}
        self._applicable: dict[str, list[Counter]] = {}  # by provider, for this day
        cid = limits.campaign_id
        self._add(
            Counter(
                f"campaign:{cid}",
                "lifetime",
                "campaign",
                "lifetime",
                max_count=limits.count,
                max_spend=limits.budget,
                max_customers=limits.audience,
            )
        )
        self._add(
            Counter(
                f"campaign:{cid}",
                day,
                "campaign_daily",
                "daily",
                max_count=limits.daily_count,
                max_spend=limits.daily_budget,
            )
        )

    def set_day(self, conn: Transaction | Any, day: str, site_day: str) -> None:
        """Move to another local day (a dry run walking through the days)."""
        if day == self.day and site_day == self.site_day:
            return
        tx = store.as_transaction(conn)
        self._applicable.clear()
        if day != self.day:
            self.day = day
            cid = self.limits.campaign_id
            if (f"campaign:{cid}", day) not in self.counters:
                self._load_one(
                    tx,
                    self._add(
                        Counter(
                            f"campaign:{cid}",
                            day,
                            "campaign_daily",
                            "daily",
                            max_count=self.limits.daily_count,
                            max_spend=self.limits.daily_budget,
                        )
                    ),
                )
        if site_day != self.site_day:
            self.site_day = site_day
            for provider in {
                c.cap.split(":", 1)[1]
                for c in self.counters.values()
                if c.cap.startswith("provider:")
            }:
                scope = policy_scope(provider, self.limits.currency or "")
                if (scope, site_day) not in self.counters:
                    self._load_one(tx, self._provider(provider)[1])

    def _load_one(self, tx: Transaction, counter: Counter) -> None:
        usage = store.counter_usage(tx, counter.scope, counter.period)
        if usage is not None:
            counter.count, counter.spend, counter.customers = usage

    def _add(self, counter: Counter) -> Counter:
        self.counters[(counter.scope, counter.period)] = counter
        return counter

    def _provider(self, provider: str) -> list[Counter]:
        """The provider's policy counters in the campaign's currency (none without one)."""
        currency = self.limits.currency
        if currency is None:
            return []
        out = []
        for period, kind, limit in (
            ("lifetime", "lifetime", self.limits.provider_lifetime.get(provider)),
            (self.site_day, "daily", self.limits.provider_daily.get(provider)),
        ):
            key = (policy_scope(provider, currency), period)
            counter = self.counters.get(key)
            if counter is None:
                counter = self._add(
                    Counter(key[0], period, f"provider:{provider}", kind, max_spend=limit)  # type: ignore[arg-type]
                )
            out.append(counter)
        return out

    def applicable(self, provider: str) -> list[Counter]:
        """The counters a grant of ``provider`` books on the book's current days."""
        counters = self._applicable.get(provider)
        if counters is None:
            cid = self.limits.campaign_id
            counters = [
                self.counters[(f"campaign:{cid}", "lifetime")],
                self.counters[(f"campaign:{cid}", self.day)],
                *self._provider(provider),
            ]
            self._applicable[provider] = counters
        return counters

    def load(self, conn: Transaction | Any, providers: list[str]) -> CapBook:
        """Read current usage for every counter this book may touch."""
        tx = store.as_transaction(conn)
        for provider in providers:
            self._provider(provider)
        for counter in self.counters.values():
            self._load_one(tx, counter)
        return self

    def check(self, value: int, provider: str, first: bool) -> Refusal | None:
        for counter in self.applicable(provider):
            limit = counter.refusal(value, first)
            if limit is not None:
                return Refusal(counter.cap, counter.kind, limit, counter.scope, counter.period)
        return None

    def reserve(self, value: int, provider: str, first: bool) -> Refusal | None:
        """Book one grant against every applicable counter, or none when one is full."""
        refusal = self.check(value, provider, first)
        if refusal is None:
            for counter in self.applicable(provider):
                counter.book(value, first)
        return refusal

    def flush(self, conn: Transaction | Any) -> None:
        """Write the deltas; the CHECK constraints of ``cap_counters`` guard the limits."""
        store.add_to_counters(
            store.as_transaction(conn),
            [
                {
                    "scope": c.scope,
                    "period": c.period,
                    "count": c.d_count,
                    "spend": c.d_spend,
                    "customers": c.d_customers,
                    "max_count": c.max_count,
                    "max_spend": c.max_spend,
                    "max_customers": c.max_customers,
                }
                for c in self.counters.values()
                if c.d_count or c.d_spend or c.d_customers
            ],
        )
        for c in self.counters.values():
            c.count += c.d_count
            c.spend += c.d_spend
            c.customers += c.d_customers
            c.d_count = c.d_spend = c.d_customers = 0


def release_sync(
    conn: Transaction | Any, scopes: list[tuple[str, str]], value: int, first: bool
) -> None:
    """Give back one grant's reservation on the given counters (a failed issue)."""
    store.take_from_counters(store.as_transaction(conn), scopes, value, first)


def migrate_currencyless_sync(conn: Transaction | Any, site_timezone: str) -> int:
    """Key the policy counters by currency where they were kept by provider alone.

    Counters written before policy budgets had a currency (scope ``provider:<name>``)
    added up the minor units of every currency. They are rebuilt per currency from
    the grants that count (every grant not failed), lifetime and per site day in
    ``site_timezone``, and the old rows are removed; returns how many were removed
    (0 when there is nothing to do: running it at every start costs one query).
    """
    tx = store.as_transaction(conn)
    old = store.currencyless_scopes(tx)
    if not old:
        return 0
    providers = sorted({scope.split(":", 1)[1] for scope in old})
    zone = ZoneInfo(site_timezone)
    totals: dict[tuple[str, str], list[int]] = {}
    for provider, currency, value, created_at, first in store.counted_grants(tx, providers):
        scope = policy_scope(provider, currency)
        day = datetime.fromtimestamp(created_at, zone).date().isoformat()
        for period in ("lifetime", day):
            row = totals.setdefault((scope, period), [0, 0, 0])
            row[0] += 1
            row[1] += value
            row[2] += 1 if first else 0
    return store.replace_currencyless(tx, totals)
