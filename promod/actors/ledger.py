"""The ledger actor: owns caps and grants.

It is the only writer of reservations and spend. When the scheduler tells it
that work is due (``ProcessDue``), it grants every running campaign's due
targets batch by batch, each batch one transaction through
:func:`promod.ledger.grants.grant_batch`, and acts on what stops a batch: a
lifetime cap pauses the campaign and refuses the rest, a daily cap pauses it
until the next local day, an empty provider pauses it, the kill switch halts
everything. Grants of providers outside the database (partner APIs) are issued
after their reservation commits, retried with backoff, and released when they
finally fail.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections import Counter as Tally
from dataclasses import dataclass
from typing import Any

import anyio

from promod.actors.base import Actor
from promod.actors.messages import Inspect
from promod.campaigns import store as campaigns
from promod.campaigns.spec import CampaignSpec
from promod.ledger.caps import release_sync
from promod.ledger.grants import BatchOutcome, GrantJob, grant_batch, granted_payload, local_day
from promod.ledger.grants import refusal_reason as cap_reason
from promod.ledger.killswitch import is_engaged_sync
from promod.logs import get_logger
from promod.notify.outbox import enqueue_sync
from promod.rewards.provider import (
    GrantRequest,
    OutOfInventory,
    RewardRejected,
    TemporaryFailure,
    is_transactional,
)

log = get_logger("promod.ledger", actor="ledger")


@dataclass(frozen=True)
class ProcessDue:
    """Grant whatever is due now in every running campaign."""


@dataclass(frozen=True)
class IssuePending:
    """Issue (or retry) reserved grants of providers outside the database."""


class LedgerActor(Actor):
    name = "ledger"

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app
        self.totals: Tally[str] = Tally()
        self._pending_kick = anyio.Event()

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
        raise TypeError(f"ledger: unknown message {type(message).__name__}")

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

        return GrantJob(
            campaign_id=campaign.id,
            run_id=run_id,
            spec=campaign.spec,
            providers=plugins.reward_providers,
            site_timezone=config.daemon.timezone,
            frequency=(policy.frequency.max, policy.frequency.days) if policy.frequency else None,
            provider_lifetime={k: v.lifetime for k, v in policy.budgets.items()},
            provider_daily={k: v.daily for k, v in policy.budgets.items()},
            eligibility=eligibility,
            batch_size=self.batch_size,
        )

    async def process_due(self) -> dict[str, Any]:
        """Run batches until nothing is due; return what was done."""
        db = self.app.db
        done: Tally[str] = Tally()
        rows = await db.fetchall(
            "SELECT c.id, r.id FROM campaigns c JOIN runs r ON r.campaign_id = c.id"
            " WHERE c.state = 'running' AND r.state IN ('pilot', 'running') ORDER BY c.id"
        )
        active = [(r[0], r[1]) for r in rows]
        while active:
            still: list[tuple[str, int]] = []
            for campaign_id, run_id in active:
                now = self.app.clock.now()
                outcome = await db.run_sync(
                    lambda conn, c=campaign_id, r=run_id, n=now: self._batch(conn, c, r, n)
                )
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

    def _batch(
        self, conn: sqlite3.Connection, campaign_id: str, run_id: int, now: float
    ) -> BatchOutcome | None:
        campaign = campaigns.get_sync(conn, campaign_id)
        if campaign is None or campaign.state != "running":
            return None
        job = self.job_for(campaign, run_id)
        outcome = grant_batch(conn, job, now)
        if outcome.halted == "cap" and outcome.cap is not None:
            reason = cap_reason(outcome.cap)
            conn.execute(
                "UPDATE run_targets SET status = 'refused', reason = ?, decided_at = ?"
                " WHERE run_id = ? AND status IN ('pending', 'held')",
                (reason, now, run_id),
            )
            campaigns.pause_sync(conn, campaign_id, f"cap:{reason}", now=now)
            campaigns.finish_run_if_done_sync(conn, campaign, run_id, now=now)
        elif outcome.halted == "daily_cap" and outcome.cap is not None:
            reason = cap_reason(outcome.cap)
            campaigns.pause_sync(
                conn, campaign_id, f"daily_cap:{reason}", now=now, until=outcome.paused_until
            )
        elif outcome.halted == "no_inventory":
            reward = campaign.spec.reward
            what = reward.pool or reward.provider
            campaigns.pause_sync(conn, campaign_id, f"no_inventory:{what}", now=now)
        elif outcome.halted is None and outcome.processed < job.batch_size:
            campaigns.finish_run_if_done_sync(conn, campaign, run_id, now=now)
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

    async def issue_pending(self) -> float | None:
        """Issue every reserved grant that is due; the next retry time, or None."""
        db = self.app.db
        now = self.app.clock.now()
        if await db.fetchone("SELECT 1 FROM meta WHERE key = 'killswitch'"):
            return None
        rows = await db.fetchall(
            "SELECT g.id, g.campaign_id, g.run_id, g.customer_id, g.provider, g.amount_minor,"
            " g.value_minor, g.currency, g.attempts, c.spec FROM grants g"
            " JOIN campaigns c ON c.id = g.campaign_id"
            " WHERE g.state = 'reserved' AND g.next_attempt_at <= ? ORDER BY g.id LIMIT 200",
            (now,),
        )
        async with anyio.create_task_group() as tg:
            limiter = anyio.Semaphore(16)
            for row in rows:
                tg.start_soon(self._issue_one, row, limiter)
        nxt = await db.fetchone("SELECT min(next_attempt_at) FROM grants WHERE state = 'reserved'")
        if rows and len(rows) == 200:
            return float(now)
        return None if nxt is None or nxt[0] is None else float(nxt[0] or 0)

    async def _issue_one(self, row: Any, limiter: anyio.Semaphore) -> None:
        spec_dict = json.loads(row[9])
        reward = spec_dict.get("reward", {})
        if row[4] != reward.get("provider") and reward.get("fallback"):
            reward = reward["fallback"]
        options = dict(reward.get("options") or {})
        for key in ("code", "pool"):
            if reward.get(key) is not None:
                options[key] = reward[key]
        from promod.campaigns.spec import currency_exponent

        amount_exp = 0
        if reward.get("amount") and "." in str(reward["amount"]):
            amount_exp = currency_exponent(row[7])
        grant = GrantRequest(
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
        attempts = row[8] + 1
        provider = self.app.plugins.reward_providers.get(grant.provider)
        async with limiter:
            try:
                if provider is None or is_transactional(provider):
                    raise RewardRejected(f"no provider {grant.provider!r} outside the database")
                with anyio.fail_after(self.issue_timeout):
                    issued = await provider.issue(grant)
            except (RewardRejected, OutOfInventory) as exc:
                await self._fail(grant, attempts, f"{type(exc).__name__}: {exc}")
                return
            except TemporaryFailure as exc:
                await self._retry(grant, attempts, str(exc), exc.retry_after)
                return
            except Exception as exc:  # a plugin that raises or hangs is isolated
                await self._retry(grant, attempts, f"{type(exc).__name__}: {exc}", None)
                return

        def done(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE grants SET state = 'issued', issued_at = ?, attempts = ?, reference = ?,"
                " code = ?, expires_at = ?, error = NULL, next_attempt_at = NULL"
                " WHERE id = ? AND state = 'reserved'",
                (
                    self.app.clock.now(),
                    attempts,
                    issued.reference,
                    issued.code,
                    issued.expires_at,
                    grant.id,
                ),
            )
            if cur.rowcount:
                enqueue_sync(
                    conn,
                    "reward.granted",
                    granted_payload(grant, issued.code, issued.expires_at, issued.reference),
                    now=self.app.clock.now(),
                    event_id=f"reward.granted:{grant.id}",
                )

        await self.app.db.run_sync(done)

    async def _retry(
        self, grant: GrantRequest, attempts: int, error: str, retry_after: float | None
    ) -> None:
        if attempts >= self.max_attempts:
            await self._fail(grant, attempts, error)
            return
        delay = retry_after
        if delay is None:
            delay = self.retry_initial * 2 ** (attempts - 1)
            delay *= 1 + random.random() * 0.25  # jitter
        log.warning(
            "reward_issue_retry",
            provider=grant.provider,
            grant=grant.id,
            attempt=attempts,
            error=error,
        )
        await self.app.db.execute(
            "UPDATE grants SET attempts = ?, next_attempt_at = ?, error = ? WHERE id = ?",
            (attempts, self.app.clock.now() + delay, error, grant.id),
        )

    async def _fail(self, grant: GrantRequest, attempts: int, error: str) -> None:
        """Give up: the grant fails, its reservation is released, its target refused."""
        log.error("reward_issue_failed", provider=grant.provider, grant=grant.id, error=error)
        site_tz = self.app.config.daemon.timezone
        now = self.app.clock.now()

        def work(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT day, created_at FROM grants WHERE id = ? AND state = 'reserved'",
                (grant.id,),
            ).fetchone()
            if row is None:
                return
            conn.execute(
                "UPDATE grants SET state = 'failed', attempts = ?, error = ?,"
                " next_attempt_at = NULL WHERE id = ?",
                (attempts, error[:500], grant.id),
            )
            (had,) = conn.execute(
                "SELECT grants FROM customer_caps WHERE campaign_id = ? AND customer_id = ?",
                (grant.campaign_id, grant.customer_id),
            ).fetchone()
            conn.execute(
                "UPDATE customer_caps SET grants = grants - 1 WHERE campaign_id = ?"
                " AND customer_id = ?",
                (grant.campaign_id, grant.customer_id),
            )
            release_sync(
                conn,
                [
                    (f"campaign:{grant.campaign_id}", "lifetime"),
                    (f"campaign:{grant.campaign_id}", row[0]),
                    (f"provider:{grant.provider}", "lifetime"),
                    (f"provider:{grant.provider}", local_day(row[1], site_tz)),
                ],
                grant.value_minor,
                first=had == 1,
            )
            conn.execute(
                "UPDATE run_targets SET status = 'refused', reason = 'issue_failed', decided_at = ?"
                " WHERE run_id = ? AND customer_id = ?",
                (now, grant.run_id, grant.customer_id),
            )
            if is_engaged_sync(conn):
                return

        await self.app.db.run_sync(work)
