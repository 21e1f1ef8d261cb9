"""Notification campaigns: ``kind = "notification"`` — a message to a segment, no reward.

Such a campaign has the lifecycle of the others: the scheduler starts its runs
(once, or ``recurring = "daily HH:MM"``) and writes the run's targets
(promod.campaigns.runs), pilots and pauses work the same, and the ledger hands
each due batch of its runs to :func:`notification_batch` instead of granting.
A batch, in the ledger's transaction:

1. checks the campaign's ``notify.consent`` for every target (the first check:
   a customer without it is refused ``no_consent``);
2. refuses ``not_within`` a customer the campaign selected less than
   ``notify.not_within`` ago (``notification_sends``);
3. works out each selected customer's ``missing_steps`` (the ``notify.steps``
   whose ``done`` rule they do not match) and records one ``notification.due``
   outbox event per customer.

The notifier's fan-out renders each event into a message (promod.notify.render,
Jinja2, sandboxed) and its claim checks the consent again in the transaction
that hands the message to the channel, so a customer who opted out in between
gets nothing (docs/notifications.md)::

    outcome = notification_batch(tx, campaign, run_id, now=now, batch_size=1000)
"""

from __future__ import annotations

from collections import Counter as Tally
from pathlib import Path
from typing import Any

from promod.campaigns.spec import CampaignSpec
from promod.ledger.grants import BatchOutcome
from promod.notify import store, store_campaigns
from promod.notify.outbox import enqueue_many_sync
from promod.notify.render import template_issues
from promod.notify.store import as_tx
from promod.notify.templates import TemplateError, load_template
from promod.store.seam import Transaction

__all__ = [
    "EVENT_TYPE",
    "notification_batch",
    "notification_issues",
    "notification_report",
    "notification_simulate",
]

EVENT_TYPE = "notification.due"


def _event_id(campaign_id: str, run_id: int, customer_id: str) -> str:
    return f"ntf:{campaign_id}:{run_id}:{customer_id}"


def notification_batch(
    conn: Transaction | Any, campaign: Any, run_id: int, now: float, batch_size: int
) -> BatchOutcome:
    """Select (or refuse) the next due targets of a notification run; inside a transaction."""
    tx = as_tx(conn)
    outcome = BatchOutcome()
    if store.killswitch_engaged(tx):
        outcome.halted = "kill_switch"
        return outcome
    rows = store_campaigns.due_targets(tx, run_id, now, batch_size)
    if not rows:
        return outcome
    spec: CampaignSpec = campaign.spec
    notify = spec.notify
    ids = [str(r[0]) for r in rows]
    ranks = {str(r[0]): int(r[1]) for r in rows}
    consent = notify.consent if notify is not None else None
    consenting = store_campaigns.consenting(tx, ids, consent) if consent else set(ids)
    recent: set[str] = set()
    if notify is not None and notify.not_within:
        recent = store_campaigns.sent_since(tx, campaign.id, ids, now - notify.not_within)
    decisions: list[tuple[int, str, str | None]] = []
    selected: list[str] = []
    refused: Tally[str] = Tally()
    for cid in ids:
        reason = None
        if cid not in consenting:
            reason = "no_consent"
        elif cid in recent:
            reason = "not_within"
        if reason is None:
            selected.append(cid)
            decisions.append((ranks[cid], "granted", None))
        else:
            refused[reason] += 1
            decisions.append((ranks[cid], "refused", reason))
    store_campaigns.decide_targets(tx, run_id, decisions, now)
    if selected:
        done: dict[str, set[str]] = {}
        for step in notify.steps if notify is not None else ():
            done[step.id] = store_campaigns.matching(tx, step.done, selected, now)
        store_campaigns.record_sends(tx, campaign.id, run_id, selected, now)
        payloads = [
            (
                _event_id(campaign.id, run_id, cid),
                {
                    "campaign_id": campaign.id,
                    "run_id": run_id,
                    "customer_id": cid,
                    "done_steps": sorted(s for s, members in done.items() if cid in members),
                },
            )
            for cid in selected
        ]
        enqueue_many_sync(tx, EVENT_TYPE, payloads, now=now)
    outcome.granted = len(selected)
    outcome.refused = refused
    outcome.processed = len(ids)
    return outcome


# --------------------------------------------------------------------------- campaign apply


def load_texts(spec: CampaignSpec, directory: Path | None) -> dict[str, str]:
    """The campaign's subject/text/html (a template file's, with an inline subject first)."""
    notify = spec.notify
    if notify is None:
        return {}
    texts = {k: str(getattr(notify, k)) for k in ("subject", "text", "html") if getattr(notify, k)}
    if notify.template:
        if directory is None:
            raise TemplateError(f"template {notify.template!r}: no templates directory")
        found = load_template(directory, notify.template, placeholders=False)
        texts = {**found, **({"subject": texts["subject"]} if "subject" in texts else {})}
    return texts


def notification_issues(spec: CampaignSpec, directory: Path | None) -> list[dict[str, str]]:
    """Template problems of a notification campaign (``campaign apply`` refuses them)."""
    if spec.kind != "notification" or spec.notify is None:
        return []
    try:
        texts = load_texts(spec, directory)
    except TemplateError as exc:
        return [{"path": "notify.template", "message": str(exc)}]
    where = f"template {spec.notify.template}: " if spec.notify.template else ""
    return [
        {"path": f"notify.{key}", "message": f"{where}{problem}"}
        for key, source in texts.items()
        for problem in template_issues(source, html=key == "html")
    ]


# --------------------------------------------------------------------------- simulate, report


def notification_simulate(tx: Transaction, campaign: Any, now: float) -> dict[str, Any]:
    """Who a run started now would mail, and why the others would be left out; no writes."""
    spec: CampaignSpec = campaign.spec
    notify = spec.notify
    members = store_campaigns.segment_members(tx, spec.segment, now) if spec.segment else []
    consent = notify.consent if notify is not None else None
    consenting = store_campaigns.consenting(tx, members, consent) if consent else set(members)
    recent: set[str] = set()
    if notify is not None and notify.not_within:
        recent = store_campaigns.sent_since(tx, campaign.id, members, now - notify.not_within)
    would = [c for c in members if c in consenting and c not in recent]
    if spec.caps.audience is not None:
        would = would[: spec.caps.audience]
    steps: dict[str, int] = {}
    for step in notify.steps if notify is not None else ():
        done = store_campaigns.matching(tx, step.done, would, now) if would else set()
        steps[step.id] = len(would) - len(done)
    return {
        "campaign_id": campaign.id,
        "kind": "notification",
        "as_of": now,
        "targeted": len(members),
        "would_mail": len(would),
        "refused": {
            "no_consent": len(members) - len(consenting),
            "not_within": len(consenting & recent),
        },
        "missing_steps": steps,
    }


def notification_report(tx: Transaction, campaign: Any) -> dict[str, Any]:
    """Per run: targeted, selected and refused by reason; the messages by state."""
    runs: dict[int, dict[str, Any]] = {}
    for row in store_campaigns.target_figures(tx, campaign.id):
        entry = runs.setdefault(
            int(row[0]),
            {
                "run_id": int(row[0]),
                "state": row[1],
                "started_at": row[2],
                "finished_at": row[3],
                "targeted": 0,
                "selected": 0,
                "pending": 0,
                "refused": {},
            },
        )
        count = int(row[6])
        entry["targeted"] += count
        if row[4] == "granted":
            entry["selected"] += count
        elif row[4] == "refused":
            entry["refused"][str(row[5])] = entry["refused"].get(str(row[5]), 0) + count
        else:
            entry["pending"] += count
    messages: dict[str, Any] = {"pending": 0, "sent": 0, "dead": 0, "dropped": 0, "skipped": {}}
    for row in store_campaigns.delivery_figures(tx, campaign.id):
        if row[0] == "skipped":
            messages["skipped"][str(row[1])] = int(row[2])
        else:
            messages[str(row[0])] = messages.get(str(row[0]), 0) + int(row[2])
    return {
        "campaign_id": campaign.id,
        "kind": "notification",
        "state": campaign.state,
        "runs": list(runs.values()),
        "selected": sum(r["selected"] for r in runs.values()),
        "messages": messages,
    }
