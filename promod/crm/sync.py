"""A full refresh of one connector's list, and the export of its responses.

:func:`refresh` runs the steps in order: (1) export every suppression not yet sent
to the CRM, (2) fetch the whole list, page by page, staging valid records and
counting refused ones by record number, (3) plan the change, skipping suppressed
addresses without a newer opt-in, and either apply it in one transaction or hold it
when it changes more than ``max_change`` of the list (a ``crm.sync_held`` alert),
(4) report. A failure leaves the old list; a killed run leaves staged rows that the
next start drops (:func:`promod.crm.store.fail_interrupted`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from promod.config import CrmConfig
from promod.crm import store
from promod.crm.connector import Connector, CrmError
from promod.crm.records import CrmRecord, parse_page
from promod.logs import get_logger
from promod.notify.outbox import enqueue_sync
from promod.store.seam import Transaction
from promod.units import parse_duration

__all__ = ["EXPORT_BATCH", "STAGE_BATCH", "Progress", "export_responses", "next_time", "refresh"]

log = get_logger("promod.crm")

STAGE_BATCH = 20_000  # records (at least) staged per transaction
EXPORT_BATCH = 10_000  # suppression records sent to the CRM per call


@dataclass
class Progress:
    """Where a running refresh is (read by ``crm status`` and the progress bar)."""

    run_id: int
    step: str = "export"
    fetched: int = 0
    invalid: int = 0
    started: float = field(default_factory=time.monotonic)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "step": self.step,
            "fetched": self.fetched,
            "invalid": self.invalid,
        }


def next_time(schedule: str, after: float, zone: str = "UTC") -> float:
    """The first moment of ``schedule`` strictly after ``after`` (site time zone)."""
    words = schedule.split()
    if words[0] == "daily":
        hour, minute = (int(x) for x in words[1].split(":"))
        local = datetime.fromtimestamp(after, ZoneInfo(zone))
        moment = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if moment.timestamp() <= after:
            moment = (moment + timedelta(days=1)).replace(hour=hour, minute=minute)
        return moment.astimezone(UTC).timestamp()
    step = 3600.0 if words[0] == "hourly" else parse_duration(words[1])
    return (after // step + 1) * step


def _change_too_big(plan: dict[str, int], max_change: Decimal) -> bool:
    before = plan["before"]
    if before == 0:
        return False  # the first fill of a list
    limit = max_change * before
    return plan["added"] > limit or plan["removed"] > limit


async def refresh(
    app: Any,
    cfg: CrmConfig,
    connector: Connector,
    *,
    trigger: str,
    on_start: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """One full refresh; the finished run (state applied, held or failed)."""
    db, clock = app.db, app.clock
    name = cfg.name
    run_id = await db.run(
        partial(
            store.begin_run,
            connector=name,
            list_name=cfg.list_name,
            consent=cfg.consent,
            trigger=trigger,
            now=clock.now(),
        )
    )
    progress = Progress(run_id)
    if on_start is not None:
        on_start(progress)
    log.info("crm_sync_started", connector=name, run=run_id, trigger=trigger)
    try:
        # 1. Suppressions out first, so that the CRM's export no longer offers them.
        exported = await _export_suppressions(app, cfg, connector)
        await db.run(partial(store.update_run, run_id=run_id, exported=exported))
        # 2. The whole list, streamed.
        progress.step = "fetch"
        errors: list[dict[str, Any]] = []
        number = 0
        # Pages are gathered until STAGE_BATCH records, then checked as the store's
        # executemany pulls them, in its worker thread: one thread hop and one
        # commit for many pages, no list of records built beside the pages.
        pages: list[Sequence[Any]] = []
        waiting = 0
        async for page in connector.fetch():
            pages.append(page)
            number += len(page)
            waiting += len(page)
            progress.fetched = number
            if waiting >= STAGE_BATCH:
                checked = _Checked(pages, first=number - waiting + 1, cfg=cfg)
                await db.run(partial(store.stage_records, run_id=run_id, records=checked))
                checked.report(progress, errors)
                pages, waiting = [], 0
        if pages:
            checked = _Checked(pages, first=number - waiting + 1, cfg=cfg)
            await db.run(partial(store.stage_records, run_id=run_id, records=checked))
            checked.report(progress, errors)
        pages = []
        await db.run(
            partial(
                store.update_run,
                run_id=run_id,
                fetched=number,
                accepted=number - progress.invalid,
                invalid=progress.invalid,
                errors=errors,
            )
        )
        # 3. Apply, or hold a change too big to be believed.
        progress.step = "apply"
        finished: dict[str, Any] = await db.run(
            partial(_apply_or_hold, app=app, cfg=cfg, run_id=run_id, trigger=trigger)
        )
        return finished
    except BaseException as raised:
        exc = _first(raised)
        reason = str(exc) if isinstance(exc, CrmError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, Exception):
            log.error("crm_sync_failed", connector=name, run=run_id, error=reason)
            await db.run(partial(_fail, run_id=run_id, cfg=cfg, reason=reason, now=clock.now()))
            run: dict[str, Any] | None = await db.run(
                partial(store.get_run, run_id=run_id), write=False
            )
            assert run is not None
            return run
        raise


async def _export_suppressions(app: Any, cfg: CrmConfig, connector: Connector) -> int:
    """Send every suppression not yet sent, in parts; how many went.

    Each part the CRM took is marked sent at once, whatever befalls the next.
    """
    db, name = app.db, cfg.name
    records, unmatched = await db.run(
        partial(store.pending_suppressions, connector=name, consent=cfg.consent),
        write=False,
    )
    if unmatched:
        log.info("crm_suppressions_without_entity", connector=name, count=unmatched)
    for at in range(0, len(records), EXPORT_BATCH):
        part = records[at : at + EXPORT_BATCH]
        await connector.export_suppressions(part)
        await db.run(
            partial(store.mark_suppressions_sent, connector=name, records=part, now=app.clock.now())
        )
    return len(records)


class _Checked:
    """The valid records of some pages, checked as they are iterated; the refused counted.

    Iterated once, by :func:`promod.crm.store.stage_records` in the store's thread.
    """

    def __init__(self, pages: Sequence[Sequence[Any]], *, first: int, cfg: CrmConfig) -> None:
        self.pages = pages
        self.first = first
        self.consent = cfg.consent
        self.media_type = cfg.media_type
        self.invalid = 0
        self.refused: list[dict[str, Any]] = []

    def __iter__(self) -> Iterator[CrmRecord]:
        number = self.first
        for page in self.pages:
            valid, refused = parse_page(
                page, consent=self.consent, media_type=self.media_type, first=number
            )
            number += len(page)
            self.invalid += len(refused)
            if len(self.refused) < store.MAX_ERRORS:
                self.refused.extend(refused[: store.MAX_ERRORS - len(self.refused)])
            yield from valid

    def report(self, progress: Progress, errors: list[dict[str, Any]]) -> None:
        progress.invalid += self.invalid
        errors.extend(self.refused[: max(0, store.MAX_ERRORS - len(errors))])


def _first(exc: BaseException) -> BaseException:
    """The first real error inside task-group exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _fail(tx: Transaction, *, run_id: int, cfg: CrmConfig, reason: str, now: float) -> None:
    store.finish_run(tx, run_id, "failed", now=now, error=reason)
    enqueue_sync(
        tx,
        "crm.sync_failed",
        {"connector": cfg.name, "list": cfg.list_name, "run": run_id, "error": reason},
        now=now,
        event_id=f"crm.sync_failed:{cfg.name}:{run_id}",
    )


def _apply_or_hold(tx: Transaction, *, app: Any, cfg: CrmConfig, run_id: int, trigger: str) -> Any:
    now = app.clock.now()
    plan = store.plan_run(tx, run_id, cfg.name, cfg.list_name, cfg.consent)
    if _change_too_big(plan, cfg.max_change):
        # An older held run gives way to the newer one.
        previous = store.held_run(tx, cfg.name)
        if previous is not None:
            store.discard_run(tx, int(previous["id"]), now=now)
        reason = (
            f"would add {plan['added']} and remove {plan['removed']} of {plan['before']}"
            f" members (max_change {cfg.max_change})"
        )
        store.update_run(
            tx,
            run_id,
            members=plan["members"],
            added=plan["added"],
            removed=plan["removed"],
            suppressed=plan["suppressed"],
        )
        store.keep_staged(tx, run_id)
        store.finish_run(tx, run_id, "held", now=now, error=reason)
        enqueue_sync(
            tx,
            "crm.sync_held",
            {
                "connector": cfg.name,
                "list": cfg.list_name,
                "run": run_id,
                **plan,
                "message": f"CRM refresh of {cfg.list_name!r} held: {reason}",
            },
            now=now,
            event_id=f"crm.sync_held:{cfg.name}:{run_id}",
        )
        log.warning("crm_sync_held", connector=cfg.name, run=run_id, **plan)
    else:
        store.apply_run(tx, run_id, cfg.name, cfg.list_name, cfg.consent, now=now, plan=plan)
        log.info("crm_sync_applied", connector=cfg.name, run=run_id, **plan)
    return store.get_run(tx, run_id)


def apply_held(tx: Transaction, *, cfg: CrmConfig, now: float) -> dict[str, Any] | None:
    """Apply the held run of ``cfg`` (None when nothing is held)."""
    held = store.held_run(tx, cfg.name)
    if held is None:
        return None
    store.apply_run(tx, int(held["id"]), cfg.name, cfg.list_name, cfg.consent, now=now)
    return store.get_run(tx, int(held["id"]))


def discard_held(tx: Transaction, *, cfg: CrmConfig, now: float) -> dict[str, Any] | None:
    held = store.held_run(tx, cfg.name)
    if held is None:
        return None
    store.discard_run(tx, int(held["id"]), now=now)
    return store.get_run(tx, int(held["id"]))


async def export_responses(app: Any, cfg: CrmConfig, connector: Connector) -> dict[str, Any]:
    """Record new responses, send those not yet exported, prune past the retention."""
    db, now = app.db, app.clock.now()
    since = now - cfg.response_retention
    counts = await db.run(
        partial(store.collect_responses, connector=cfg.name, since=since, now=now)
    )
    exported = 0
    day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    while True:
        batch = await db.run(partial(store.pending_responses, connector=cfg.name), write=False)
        if not batch:
            break
        await connector.export_responses([r for _, r in batch], day=day)
        await db.run(partial(store.mark_responses_exported, ids=[i for i, _ in batch], now=now))
        exported += len(batch)
    pruned = await db.run(partial(store.prune_responses, connector=cfg.name, before=since))
    result = {"connector": cfg.name, "exported": exported, "pruned": pruned, **counts}
    log.info("crm_responses_exported", **result)
    return result
