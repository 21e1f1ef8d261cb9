"""The ledger actor: owns caps and grants.

It is the only writer of reservations and spend. When the scheduler tells it
that work is due (``ProcessDue``), it grants every running campaign's due
targets batch by batch, each batch one transaction through
:func:`promod.ledger.grants.grant_batch`, and acts on what stops a batch: a
lifetime cap pauses the campaign and refuses the rest, a daily cap pauses it
until the next local day, an empty provider pauses it, the kill switch halts
everything. Grants of providers outside the database (partner APIs) are issued
after their reservation commits, retried with backoff, and released when they
finally fail. A cap that is full only because of such rewards still being issued
refuses nobody yet: a reservation that is never issued (out of stock, failed, or
never tried before the provider's circuit opened) gives back its share of every
counter it booked at once, and its customer gets the fallback reward or waits,
``pending`` with that reason (``no_inventory``, ``circuit_open``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
from collections import Counter as Tally
from typing import TYPE_CHECKING, Any

import anyio

from promod.actors.base import Actor
from promod.actors.messages import Inspect, IssuePending, JobFor, Kick, ProcessDue, Wake
from promod.actors.refs import wake
from promod.campaigns import store as campaigns
from promod.campaigns.policy import applied_budgets
from promod.campaigns.spec import CampaignSpec, currency_exponent
from promod.ledger import killswitch
from promod.ledger import store as ledger_store
from promod.ledger.caps import policy_scope, release_sync
from promod.ledger.grants import BatchOutcome, GrantJob, grant_batch, granted_payload, local_day
from promod.ledger.grants import refusal_reason as cap_reason
from promod.logs import get_logger
from promod.notify.campaigns import notification_batch
from promod.notify.outbox import enqueue_sync
from promod.plugins import isolation
from promod.plugins.circuit import CircuitBoard, CircuitBreaker, CircuitState
from promod.rewards.provider import (
    GrantRequest,
    IssuedReward,
    OutOfInventory,
    RewardRejected,
    TemporaryFailure,
    is_transactional,
)
from promod.store.seam import Transaction

if TYPE_CHECKING:
    from promod.app import App

log = get_logger("promod.ledger", actor="ledger")

# How long a provider that answered "out of stock" is skipped for a campaign with a
# fallback reward before it is tried again.
EMPTY_FOR = 600.0

MAX_RETRY_DELAY = 3600.0  # the backoff between tries stops doubling here


class LedgerActor(Actor):
    name = "ledger"

    def __init__(self, app: App) -> None:
        super().__init__()
        self.app = app
        self.totals: Tally[str] = Tally()
        self._pending_kick = anyio.Event()
        self._issuing = anyio.Lock()  # one issue pass at a time: the background's or settle's
        self._circuits_closed: set[str] = set()
        # (campaign, provider) -> until when the provider is taken as out of stock for
        # that campaign, which then grants its fallback reward.
        self._empty: dict[tuple[str, str], float] = {}

    @property
    def batch_size(self) -> int:
        return int(self.app.config.ledger.batch_size)

    @property
    def issue_timeout(self) -> float:
        return float(self.app.config.ledger.provider_timeout)

    @property
    def max_attempts(self) -> int:
        return int(self.app.config.ledger.provider_max_attempts)

    @property
    def retry_initial(self) -> float:
        return float(self.app.config.ledger.provider_retry)

    async def on_start(self) -> None:
        self._pending_kick.set()  # reserved grants left by a crash are issued again

    async def receive(self, message: object) -> object:
        if isinstance(message, Inspect):
            return {"totals": dict(self.totals), "batch_size": self.batch_size}
        if isinstance(message, ProcessDue):
            return await self.process_due()
        if isinstance(message, IssuePending):
            self._pending_kick.set()
            return None
        if isinstance(message, JobFor):
            return self.job_for(message.campaign, message.run_id)
        raise TypeError(f"ledger: unknown message {type(message).__name__}")

    async def settle(self) -> None:
        """Grant what is due, issue the reserved grants that are due; then look again."""
        await self.process_due()
        await self.issue_pending()
        self._pending_kick.set()

    # -- grants ----------------------------------------------------------------

    def job_for(self, campaign: campaigns.CampaignRow, run_id: int) -> GrantJob:
        """The grant job of a campaign's run under the current config and plugins."""
        config = self.app.config
        policy = config.policy
        plugins = self.app.plugins
        eligibility = None
        if plugins.has_eligibility_checks():

            def eligibility(customer_id: str, spec: CampaignSpec) -> list[str]:
                reasons: list[str] = plugins.eligibility_check({"id": customer_id}, spec)
                return reasons

        budgets = {b.provider: b.budget for b in applied_budgets(policy, campaign.spec)}
        return GrantJob(
            campaign_id=campaign.id,
            run_id=run_id,
            spec=campaign.spec,
            providers=plugins.reward_providers,
            site_timezone=config.daemon.timezone,
            frequency=(policy.frequency.max, policy.frequency.days) if policy.frequency else None,
            provider_lifetime={p: b.lifetime for p, b in budgets.items()},
            provider_daily={p: b.daily for p, b in budgets.items()},
            eligibility=eligibility,
            batch_size=self.batch_size,
            empty_providers=self._empty_providers(campaign),
        )

    def _empty_providers(self, campaign: campaigns.CampaignRow) -> frozenset[str]:
        """Providers this campaign takes as empty: out of stock lately, or (for a campaign
        with a fallback reward) behind an open circuit."""
        now = self.app.clock.now()
        empty = {
            provider
            for (campaign_id, provider), until in self._empty.items()
            if campaign_id == campaign.id and until > now
        }
        reward = campaign.spec.reward
        if reward.fallback is not None:
            breaker = self._breaker(reward.provider)
            if breaker is not None and breaker.state is CircuitState.OPEN:
                empty.add(reward.provider)
        return frozenset(empty)

    async def process_due(self) -> dict[str, Any]:
        """Run batches until nothing is due; return what was done."""
        db = self.app.db
        done: Tally[str] = Tally()
        active = await db.run(ledger_store.active_runs, write=False)
        while active:
            still: list[tuple[str, int]] = []
            now = self.app.clock.now()

            # One transaction for a batch of every campaign with work: many live
            # campaigns cost one commit a round, not one each.
            def round_(
                tx: Transaction, work: list[tuple[str, int]] = active, n: float = now
            ) -> list[BatchOutcome | None]:
                return [self._guarded(tx, c, r, n) for c, r in work]

            outcomes = await db.run(round_)
            for (campaign_id, run_id), outcome in zip(active, outcomes, strict=True):
                if outcome is None:
                    continue
                done["granted"] += outcome.granted
                done.update({f"refused:{k}": v for k, v in outcome.refused.items()})
                if outcome.async_grants:
                    self._pending_kick.set()
                if outcome.halted == "kill_switch":
                    done["halted:kill_switch"] += 1
                    return dict(done)
                if outcome.halted is None and outcome.processed >= self.batch_size:
                    still.append((campaign_id, run_id))
            active = still
        self.totals.update(done)
        return dict(done)

    def _guarded(
        self, tx: Transaction, campaign_id: str, run_id: int, now: float
    ) -> BatchOutcome | None:
        """One campaign's batch; if it fails, only that campaign pauses (with the error)."""
        try:
            with tx.savepoint("campaign_batch"):
                outcome = self._batch(tx, campaign_id, run_id, now)
        except Exception as exc:
            log.error("campaign_batch_failed", campaign=campaign_id, run=run_id, error=repr(exc))
            campaigns.pause_sync(tx, campaign_id, f"error:{type(exc).__name__}", now=now)
            return None
        return outcome

    def _batch(
        self, tx: Transaction, campaign_id: str, run_id: int, now: float
    ) -> BatchOutcome | None:
        campaign = campaigns.get_sync(tx, campaign_id)
        if campaign is None or campaign.state != "running":
            return None
        job = self.job_for(campaign, run_id)
        if campaign.spec.kind == "notification":  # a message, no reward (promod.notify.campaigns)
            outcome = notification_batch(tx, campaign, run_id, now, job.batch_size)
        else:
            outcome = grant_batch(tx, job, now)
        if outcome.halted == "cap" and outcome.cap is not None:
            reason = cap_reason(outcome.cap)
            ledger_store.refuse_undecided(tx, run_id, reason, now)
            campaigns.pause_sync(tx, campaign_id, f"cap:{reason}", now=now)
            campaigns.finish_run_if_done_sync(tx, campaign, run_id, now=now)
        elif outcome.halted == "daily_cap" and outcome.cap is not None:
            reason = cap_reason(outcome.cap)
            campaigns.pause_sync(
                tx, campaign_id, f"daily_cap:{reason}", now=now, until=outcome.paused_until
            )
        elif outcome.halted == "no_inventory":
            reward = campaign.spec.reward
            what = reward.pool or reward.provider
            campaigns.pause_sync(tx, campaign_id, f"no_inventory:{what}", now=now)
        elif outcome.halted is None and outcome.processed < job.batch_size:
            campaigns.finish_run_if_done_sync(tx, campaign, run_id, now=now)
        # halted "issuing": the rest wait; the outcome of those rewards tells ProcessDue.
        if outcome.halted not in (None, "kill_switch"):
            log.info(
                "campaign_halted",
                campaign=campaign_id,
                run=run_id,
                halted=outcome.halted,
                cap=cap_reason(outcome.cap) if outcome.cap else None,
            )
        return outcome

    # -- providers outside the database -------------------------------------------

    async def background(self) -> None:
        while True:
            await self._pending_kick.wait()
            self._pending_kick = anyio.Event()
            while True:
                wait_until = await self.issue_pending()
                if wait_until is None:
                    break
                with anyio.move_on_after(max(0.0, wait_until - self.app.clock.now())):
                    await self._pending_kick.wait()
                    self._pending_kick = anyio.Event()

    @property
    def circuits(self) -> CircuitBoard:
        return isolation.board(self.app)

    def _breaker(self, provider: str) -> CircuitBreaker | None:
        """The provider's breaker if it has been used (a fresh daemon has none)."""
        name = isolation.provider_circuit(provider)
        return self.circuits.get(name) if name in self.circuits else None

    async def issue_pending(self) -> float | None:
        """Issue every reserved grant that is due; the next time to look, or None.

        Grants of a provider whose circuit is open are left waiting (no attempt is
        spent); a half-open circuit lets one grant through as the probe.
        """
        async with self._issuing:
            return await self._issue_pending()

    async def _issue_pending(self) -> float | None:
        db = self.app.db
        now = self.app.clock.now()
        if await killswitch.is_engaged(db):
            return None
        await self._resume_closed_circuits(now)
        blocked = sorted(
            b.name.partition(":")[2]
            for b in self.circuits
            if b.name.startswith("provider:") and b.retry_in() not in (None, 0.0)
        )
        rows = await db.run(
            lambda tx: ledger_store.reserved_due(tx, now, blocked, 200), write=False
        )
        chosen, probing = [], set()
        for row in rows:
            breaker = self._breaker(row[4])
            if breaker is not None and breaker.state is CircuitState.HALF_OPEN:
                if row[4] in probing:
                    continue
                probing.add(row[4])
            chosen.append(row)
        self._circuits_closed = set()
        async with anyio.create_task_group() as tg:
            limiter = anyio.Semaphore(16)
            for row in chosen:
                tg.start_soon(self._issue_one, row, limiter)
        if chosen:
            # A run whose last rewards were just issued (or failed) can now complete.
            with contextlib.suppress(Exception):
                self.tell(ProcessDue())
        if self._circuits_closed:
            # The provider is back: what waited out the outage is tried now, not after
            # the backoff its failed probes piled up.
            closed = sorted(self._circuits_closed)
            await db.run(lambda tx: ledger_store.hurry_reserved(tx, now, closed))
            return float(now)
        if len(rows) == 200:
            return float(now)
        return await self._next_wake(float(now))

    async def _next_wake(self, now: float) -> float | None:
        """The next retry, held back for providers whose circuit is open."""
        db = self.app.db
        times: list[float] = []
        waiting: set[str] = set()
        for provider, when in await db.run(ledger_store.next_attempts, write=False):
            waiting.add(provider)
            breaker = self._breaker(provider)
            wait = None if breaker is None else breaker.retry_in()
            times.append(when if wait is None else max(when, now + wait))
        paused = await db.run(ledger_store.circuit_paused, write=False)
        for reason in sorted({reason for _, reason in paused}):
            provider = str(reason).split(":", 1)[1]
            breaker = self._breaker(provider)
            if breaker is not None and breaker.state is CircuitState.OPEN:
                times.append(now + (breaker.retry_in() or 0.0))
            elif breaker is None or breaker.state is CircuitState.CLOSED or provider not in waiting:
                times.append(now)  # resumed at the next look
        return min(times) if times else None

    def _request_of(self, row: Any) -> GrantRequest:
        spec_dict = json.loads(row[9])
        reward = spec_dict.get("reward", {})
        if row[4] != reward.get("provider") and reward.get("fallback"):
            reward = reward["fallback"]
        options = dict(reward.get("options") or {})
        for key in ("code", "pool"):
            if reward.get(key) is not None:
                options[key] = reward[key]
        amount_exp = 0
        if reward.get("amount") and "." in str(reward["amount"]):
            amount_exp = currency_exponent(row[7])
        return GrantRequest(
            id=row[0],
            campaign_id=row[1],
            run_id=row[2],
            customer_id=row[3],
            provider=row[4],
            amount_minor=row[5],
            amount_exponent=amount_exp,
            value_minor=row[6],
            currency=row[7],
            options=options,
        )

    async def _issue_one(self, row: Any, limiter: anyio.Semaphore) -> None:
        """One call to a provider, behind its circuit breaker and a timeout.

        The attempt is counted in the store before the call: a grant with an attempt
        may have been issued and is never released for an open circuit, and one
        released while it waited for its turn is not sent.
        """
        grant = self._request_of(row)
        attempts = row[8] + 1
        provider = self.app.plugins.reward_providers.get(grant.provider)
        if provider is None or is_transactional(provider):
            error = f"no provider {grant.provider!r} outside the database"
            await self._fail(grant, attempts, error)
            return
        breaker = self.circuits.get(isolation.provider_circuit(grant.provider))
        async with limiter:
            if not breaker.allow():
                return  # the circuit is open: the grant waits, no attempt is spent
            if not await self._claim(grant.id, attempts):
                breaker.release_probe()
                return  # released (or decided) while it waited for its turn
            probe = breaker.state is CircuitState.HALF_OPEN
            recorded = False
            try:
                issued = await self._call(provider, grant)
            except (RewardRejected, OutOfInventory) as exc:
                breaker.record_success()  # an answer, not a failure of the provider
                recorded = True
                if isinstance(exc, OutOfInventory):
                    await self._out_of_inventory(grant, attempts, f"OutOfInventory: {exc}")
                else:
                    await self._fail(grant, attempts, f"RewardRejected: {exc}")
                return
            except TemporaryFailure as exc:
                breaker.record_failure(exc)
                recorded = True
                await self._after_failure(grant.provider, breaker)
                await self._retry(grant, attempts, str(exc), exc.retry_after)
                return
            except Exception as exc:  # a plugin that raises, hangs or answers garbage
                breaker.record_failure(exc)
                recorded = True
                await self._after_failure(grant.provider, breaker)
                await self._retry(grant, attempts, f"{type(exc).__name__}: {exc}", None)
                return
            else:
                breaker.record_success()
                recorded = True
            finally:
                if not recorded:  # cancelled: no verdict on the provider
                    breaker.release_probe()
            if probe and breaker.state is CircuitState.CLOSED:
                log.info("provider_circuit_closed", provider=grant.provider, grant=grant.id)
                isolation.closed_again(self.app, breaker)
                self._circuits_closed.add(grant.provider)

        def done(tx: Transaction) -> None:
            if ledger_store.mark_issued(
                tx,
                grant.id,
                self.app.clock.now(),
                attempts,
                issued.reference,
                issued.code,
                issued.expires_at,
            ):
                enqueue_sync(
                    tx,
                    "reward.granted",
                    granted_payload(grant, issued.code, issued.expires_at, issued.reference),
                    now=self.app.clock.now(),
                    event_id=f"reward.granted:{grant.id}",
                )

        with anyio.CancelScope(shield=True):
            await self.app.db.run(done)

    async def _claim(self, grant_id: int, attempts: int) -> bool:
        """Count the attempt about to be made; False when the grant is no longer reserved
        (or another attempt was counted meanwhile)."""
        with anyio.CancelScope(shield=True):
            claimed = await self.app.db.run(
                lambda tx: ledger_store.claim_attempt(tx, grant_id, attempts)
            )
        return claimed

    async def _call(self, provider: Any, grant: GrantRequest) -> IssuedReward:
        """``provider.issue(grant)`` within ``[ledger] provider_timeout``, checked."""
        timeout = self.issue_timeout
        try:
            with anyio.fail_after(timeout):
                issued = await provider.issue(grant)
        except TimeoutError as exc:
            raise TemporaryFailure(f"no answer within {timeout:g}s") from exc
        if not isinstance(issued, IssuedReward):
            raise TypeError(f"issue() returned {type(issued).__name__}, not an IssuedReward")
        return issued

    async def _after_failure(self, provider: str, breaker: CircuitBreaker) -> None:
        """A failure opened the circuit: pause the provider's campaigns, alert."""
        opened, alert = isolation.newly_opened(self.app, breaker)
        if not opened:
            return
        now = self.app.clock.now()
        reason = f"circuit_open:{provider}"

        def work(tx: Transaction) -> list[str]:
            self._release_untried_sync(tx, provider, now)
            # A campaign with a fallback grants it while the circuit is open; the
            # others pause until it closes.
            ids = ledger_store.running_without_fallback(tx, provider)
            paused = [c for c in ids if campaigns.pause_sync(tx, c, reason, now=now)]
            if alert:
                isolation.record_circuit_open_sync(tx, breaker, now=now, campaigns=paused)
            return paused

        with anyio.CancelScope(shield=True):
            paused = await self.app.db.run(work)
        log.warning("provider_circuit_open", provider=provider, campaigns=paused)
        wake(self.app.actor("notifier"), Wake())
        wake(self.app.actor("scheduler"), Kick())  # released customers: fallback, or wait

    def _release_untried_sync(self, tx: Transaction, provider: str, now: float) -> list[int]:
        """Release the grants of ``provider`` never sent to it (no attempt counted; one
        is counted before each call): they cannot have been issued. Their customers
        wait (``pending``, reason ``circuit_open``) or get the campaign's fallback."""
        rows = ledger_store.untried_reserved(tx, provider)
        for grant_id, campaign_id, run_id, customer_id, name, value, currency in rows:
            grant = GrantRequest(
                id=grant_id,
                campaign_id=campaign_id,
                run_id=run_id,
                customer_id=customer_id,
                provider=name,
                amount_minor=None,
                amount_exponent=0,
                value_minor=value,
                currency=currency,
                options={},
            )
            if self._release_sync(tx, grant, 0, "circuit_open: never sent"):
                self._back_in_line_sync(tx, grant, "circuit_open", now)
        if rows:
            log.info("reservations_released", provider=provider, reason="circuit_open", n=len(rows))
        return [int(r[0]) for r in rows]

    def _back_in_line_sync(
        self, tx: Transaction, grant: GrantRequest, reason: str, now: float
    ) -> bool:
        """The customer of a released grant waits again (``pending`` with ``reason``) while
        the run is open; True then. In a finished run it is refused with ``reason``."""
        if ledger_store.run_state(tx, grant.run_id) in ("pilot", "running"):
            ledger_store.set_target(tx, grant.run_id, grant.customer_id, "pending", reason, None)
            return True
        ledger_store.set_target(tx, grant.run_id, grant.customer_id, "refused", reason, now)
        return False

    async def _resume_closed_circuits(self, now: float) -> None:
        """Resume campaigns paused for a circuit that is closed again, or half-open with
        no waiting grant to probe it (then the campaign's next grant is the probe)."""
        db = self.app.db
        rows = await db.run(ledger_store.circuit_paused, write=False)
        resume: list[tuple[str, str]] = []
        for campaign_id, reason in rows:
            provider = str(reason).split(":", 1)[1]
            breaker = self._breaker(provider)
            state = CircuitState.CLOSED if breaker is None else breaker.state
            if state is CircuitState.OPEN:
                continue
            if state is CircuitState.HALF_OPEN and await db.run(
                functools.partial(ledger_store.has_reserved, provider=provider), write=False
            ):
                continue
            resume.append((str(campaign_id), str(reason)))
        if not resume:
            return

        def work(tx: Transaction) -> list[str]:
            done = []
            for campaign_id, reason in resume:
                current = campaigns.get_sync(tx, campaign_id)
                if current is None or current.state != "paused" or current.paused_reason != reason:
                    continue
                if campaigns.resume_sync(tx, campaign_id, now=now):
                    done.append(campaign_id)
            return done

        resumed = await db.run(work)
        if resumed:
            log.info("campaigns_resumed", reason="circuit_closed", campaigns=resumed)
            wake(self.app.actor("scheduler"), Kick())

    async def _retry(
        self, grant: GrantRequest, attempts: int, error: str, retry_after: float | None
    ) -> None:
        """Try again after ``provider_retry`` doubling per attempt, with jitter, and never
        sooner than the provider's ``retry_after``; give up after ``provider_max_attempts``."""
        if attempts >= self.max_attempts:
            await self._fail(grant, attempts, error)
            return
        delay = min(self.retry_initial * 2 ** (attempts - 1), MAX_RETRY_DELAY)
        delay *= 1 + random.random() * 0.25  # jitter
        if retry_after is not None:
            delay = max(delay, retry_after)
        log.warning(
            "reward_issue_retry",
            provider=grant.provider,
            grant=grant.id,
            attempt=attempts,
            retry_in=round(delay, 3),
            error=error,
        )
        next_at = self.app.clock.now() + delay
        with anyio.CancelScope(shield=True):
            await self.app.db.run(
                lambda tx: ledger_store.schedule_retry(tx, grant.id, attempts, next_at, error)
            )

    async def _fail(self, grant: GrantRequest, attempts: int, error: str) -> None:
        """Give up: the grant fails and its reservation is released. A campaign with a
        fallback reward grants that instead (while the run is open); otherwise the
        target is refused ``issue_failed``."""
        log.error("reward_issue_failed", provider=grant.provider, grant=grant.id, error=error)
        now = self.app.clock.now()

        def work(tx: Transaction) -> bool:
            if not self._release_sync(tx, grant, attempts, error):
                return False
            campaign = campaigns.get_sync(tx, grant.campaign_id)
            falls_back = (
                campaign is not None
                and campaign.spec.reward.provider == grant.provider
                and campaign.spec.reward.fallback is not None
            )
            if falls_back:
                return self._back_in_line_sync(tx, grant, "issue_failed", now)
            ledger_store.set_target(
                tx, grant.run_id, grant.customer_id, "refused", "issue_failed", now
            )
            return False

        with anyio.CancelScope(shield=True):
            waiting = await self.app.db.run(work)
        if waiting:
            wake(self.app.actor("scheduler"), Kick())

    async def _out_of_inventory(self, grant: GrantRequest, attempts: int, error: str) -> None:
        """The provider has nothing left: release the grant; fall back, or pause.

        The grant fails and its reservation is released. While the run is still
        open the customer goes back in line (target ``pending``, reason
        ``no_inventory``); in a finished run the target is refused (``no_inventory``).
        A campaign with a ``fallback`` reward then grants the fallback — to this customer too — and
        takes the provider as empty for ``EMPTY_FOR`` seconds before trying it
        again; a campaign without one pauses with reason
        ``no_inventory:<provider>`` (a ``campaign.paused`` event) until resumed.
        """
        log.warning("reward_out_of_inventory", provider=grant.provider, grant=grant.id)
        now = self.app.clock.now()

        def work(tx: Transaction) -> bool:
            """Release the grant; True when the campaign falls back instead of pausing."""
            campaign = campaigns.get_sync(tx, grant.campaign_id)
            falls_back = (
                campaign is not None
                and campaign.spec.reward.provider == grant.provider
                and campaign.spec.reward.fallback is not None
            )
            if not self._release_sync(tx, grant, attempts, error):
                return False
            self._back_in_line_sync(tx, grant, "no_inventory", now)
            if not falls_back:
                campaigns.pause_sync(
                    tx, grant.campaign_id, f"no_inventory:{grant.provider}", now=now
                )
            return falls_back

        with anyio.CancelScope(shield=True):
            falls_back = await self.app.db.run(work)
        if falls_back:
            self._empty[(grant.campaign_id, grant.provider)] = now + EMPTY_FOR
            wake(self.app.actor("scheduler"), Kick())

    def _release_sync(
        self, tx: Transaction, grant: GrantRequest, attempts: int, error: str
    ) -> bool:
        """Mark a reserved grant failed and give back its share of every counter it booked;
        False if it is not reserved."""
        row = ledger_store.reserved_grant(tx, grant.id)
        if row is None:
            return False
        # Whether it was the customer's first grant of the campaign (the audience count).
        had = ledger_store.live_grants_of(tx, grant.campaign_id, grant.customer_id)
        ledger_store.fail_grant(tx, grant.id, attempts, error)
        if row[2] is not None:
            scopes = [(str(scope), str(period)) for scope, period in json.loads(row[2])]
        else:  # reserved before the counters were recorded on the grant
            scopes = [
                (f"campaign:{grant.campaign_id}", "lifetime"),
                (f"campaign:{grant.campaign_id}", row[0]),
            ]
            if grant.currency is not None:
                policy = policy_scope(grant.provider, grant.currency)
                site_day = local_day(row[1], self.app.config.daemon.timezone)
                scopes += [(policy, "lifetime"), (policy, site_day)]
        release_sync(tx, scopes, int(row[3]), first=had == 1)
        return True
