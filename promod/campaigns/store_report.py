"""The campaign report in the store: every target counted once, spend against every cap.

``report_sync`` reads one campaign's report as one structure in one snapshot;
:mod:`promod.campaigns.report` renders it (rows, CSV, text). Every target is in
exactly one of granted (issued), refused, pending, held, issuing (a provider is
issuing its reward) and failed, and the report states the sum::

    report = await db.run(lambda tx: report_sync(tx, "winback-30d"), write=False)
    report["granted"], report["refused"], report["spend"], report["balance"]["holds"]

The caps include the site-wide policy budgets that bind the campaign (its reward
providers' budgets in its currency), named as their refusals are
(``provider_budget:wallet_points``, ``provider_daily_budget:wallet_points``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from promod.campaigns.policy import applied_budgets
from promod.campaigns.spec import CampaignSpec, currency_exponent
from promod.campaigns.store import CampaignRow, get_sync
from promod.clearance.store import campaign_section_sync
from promod.codepool.report import codes_report
from promod.config import PolicyConfig
from promod.ledger import killswitch
from promod.ledger.caps import policy_scope
from promod.live.report import live_report
from promod.store.seam import TxLike, as_tx, legacy_connection
from promod.units import format_money

__all__ = ["BALANCE", "EQUATION", "caps_usage", "kill_switch_sync", "policy_caps", "report_sync"]

# The figures every target of a campaign is counted in exactly once.
BALANCE = ("granted", "refused", "pending", "held", "issuing", "failed")
EQUATION = "targeted = " + " + ".join(BALANCE)


def report_sync(
    tx: TxLike,
    campaign_id: str,
    *,
    policy: PolicyConfig | None = None,
    site_timezone: str = "UTC",
    now: float | None = None,
) -> dict[str, Any] | None:
    """The report of one campaign as one structure (None if there is none); text
    and CSV are renderings of it.

    With ``policy``, its ``caps`` also list every policy budget that binds the
    campaign (site days in ``site_timezone``, today being the day of ``now``).
    """
    tx = as_tx(tx)
    campaign = get_sync(tx, campaign_id)
    if campaign is None:
        return None
    exp = currency_exponent(campaign.spec.currency)

    def money(v: int | None) -> str | None:
        return None if v is None else format_money(int(v), exp)

    # Every target, once: by its status, and a granted one by its reward's state.
    outcome: dict[str, int] = dict.fromkeys(("issued", "issuing"), 0)
    pending_by: dict[str, int] = {}
    refused: dict[str, int] = {}
    held = failed = 0
    for status, reason, grant_state, n in tx.fetch_all(
        "SELECT t.status, t.reason, g.state, count(*) FROM run_targets t"
        " JOIN runs r ON r.id = t.run_id"
        " LEFT JOIN grants g ON g.campaign_id = r.campaign_id AND g.run_id = t.run_id"
        " AND g.customer_id = t.customer_id AND g.state != 'failed' AND t.status = 'granted'"
        " WHERE r.campaign_id = ? GROUP BY 1, 2, 3",
        (campaign_id,),
    ):
        n = int(n)
        if status == "granted":
            outcome["issuing" if grant_state == "reserved" else "issued"] += n
        elif status == "refused" and reason == "issue_failed":
            failed += n
        elif status == "refused":
            key = str(reason or "refused")
            refused[key] = refused.get(key, 0) + n
        elif status == "held":
            held += n
        else:  # pending, or awaiting the site's clearance
            key = "awaiting_clearance" if status == "awaiting" else str(reason or "due")
            pending_by[key] = pending_by.get(key, 0) + n
    refused = dict(sorted(refused.items(), key=lambda kv: (-kv[1], kv[0])))
    grants = {
        str(row[0]): (int(row[1]), int(row[2]))
        for row in tx.fetch_all(
            "SELECT state, count(*), coalesce(sum(value_minor), 0) FROM grants"
            " WHERE campaign_id = ? GROUP BY state",
            (campaign_id,),
        )
    }
    issued_n, issued_spend = grants.get("issued", (0, 0))
    issuing_n, issuing_spend = grants.get("reserved", (0, 0))
    failed_n, failed_spend = grants.get("failed", (0, 0))
    per_day = [
        {"day": row[0], "granted": row[1], "spend": money(row[2])}
        for row in tx.fetch_all(
            "SELECT day, count(*), sum(value_minor) FROM grants WHERE campaign_id = ?"
            " AND state = 'issued' GROUP BY day ORDER BY day",
            (campaign_id,),
        )
    ]
    runs = [
        {
            "run": row[0],
            "seq": row[1],
            "state": row[2],
            "started_at": row[3],
            "finished_at": row[4],
            "targeted": row[5],
        }
        for row in tx.fetch_all(
            "SELECT id, seq, state, started_at, finished_at, targeted FROM runs"
            " WHERE campaign_id = ? ORDER BY seq",
            (campaign_id,),
        )
    ]
    customers = tx.fetch_value(
        "SELECT count(*) FROM customer_caps WHERE campaign_id = ? AND grants > 0", (campaign_id,)
    )
    figures = {
        "granted": outcome["issued"],
        "refused": sum(refused.values()),
        "pending": sum(pending_by.values()),
        "held": held,
        "issuing": outcome["issuing"],
        "failed": failed,
    }
    targeted = sum(int(r["targeted"]) for r in runs)
    report: dict[str, Any] = {
        "id": campaign.id,
        "state": campaign.state,
        "paused_reason": campaign.paused_reason,
        "paused": campaign.pause_info(),
        "kill_switch": kill_switch_sync(tx),
        "currency": campaign.spec.currency,
        "targeted": targeted,
        "granted": figures["granted"],
        "issuing": figures["issuing"],
        "failed": figures["failed"],
        "pending": figures["pending"],
        "held": figures["held"],
        "refused": refused,
        "pending_by_reason": dict(sorted(pending_by.items())),
        "balance": {
            "equation": EQUATION,
            **{f"{k}": v for k, v in figures.items()},
            "sum": sum(figures.values()),
            "holds": sum(figures.values()) == targeted,
        },
        "customers": customers,
        "spend": money(issued_spend),
        # Reward rows: reserved = what the caps hold (issued + issuing); failed ones
        # gave their reservation back (a customer may hold a fallback after one).
        "grants": {
            "reserved": {
                "count": issued_n + issuing_n,
                "value": money(issued_spend + issuing_spend),
            },
            "issuing": {"count": issuing_n, "value": money(issuing_spend)},
            "issued": {"count": issued_n, "value": money(issued_spend)},
            "failed": {"count": failed_n, "value": money(failed_spend)},
        },
        "caps": caps_usage(tx, campaign, money),
        "per_day": per_day,
        "runs": runs,
    }
    if policy is not None:
        report["caps"].update(
            policy_caps(
                tx,
                policy,
                campaign.spec,
                campaign_id=campaign_id,
                site_timezone=site_timezone,
                now=now,
            )
        )
    extra = _extra_sections(tx, campaign_id)
    if extra:
        report.update(extra)
    return report


def kill_switch_sync(tx: TxLike) -> dict[str, Any] | None:
    """``{"engaged_at", "by"}`` while the kill switch is engaged, else None."""
    tx = as_tx(tx)
    row = tx.fetch_one("SELECT value FROM meta WHERE key = ?", (killswitch.KEY,))
    return None if row is None else dict(json.loads(row[0]))


def caps_usage(tx: TxLike, campaign: CampaignRow, money: Any) -> dict[str, Any]:
    """Each cap: its limit and what its counter holds (rewards issued and being issued).

    Every entry is ``{"used", "limit"}``; ``used`` of a daily cap maps each day to its
    figure. Text and CSV render any such entry, so more caps can be listed here.
    """
    tx = as_tx(tx)
    caps = campaign.spec.caps
    scope = f"campaign:{campaign.id}"
    counters = {
        str(row[0]): (int(row[1]), int(row[2]), int(row[3]))
        for row in tx.fetch_all(
            "SELECT period, count, spend, customers FROM cap_counters WHERE scope = ?"
            " ORDER BY period",
            (scope,),
        )
    }
    count, spend, customers = counters.get("lifetime", (0, 0, 0))
    days = {p: v for p, v in counters.items() if p != "lifetime"}
    out: dict[str, Any] = {}
    if caps.audience is not None:
        out["audience"] = {"used": customers, "limit": caps.audience}
    if caps.count is not None:
        out["count"] = {"used": count, "limit": caps.count}
    if caps.budget_minor is not None:
        out["budget"] = {"used": money(spend), "limit": money(caps.budget_minor)}
    if caps.daily_count is not None:
        out["daily_count"] = {
            "limit": caps.daily_count,
            "used": {d: c for d, (c, _, _) in days.items()},
        }
    if caps.daily_budget_minor is not None:
        out["daily_budget"] = {
            "limit": money(caps.daily_budget_minor),
            "used": {d: money(s) for d, (_, s, _) in days.items()},
        }
    out["per_customer"] = {"used": None, "limit": caps.per_customer}
    return out


def _extra_sections(tx: TxLike, campaign_id: str) -> dict[str, Any]:
    """The sections of the parts that apply to this campaign: clearance, live, codes."""
    tx = as_tx(tx)
    out: dict[str, Any] = {}
    clearance = campaign_section_sync(tx, campaign_id)
    if clearance:
        out["clearance"] = clearance
    live = live_report(legacy_connection(tx), campaign_id)
    if live is not None:
        out["live"] = live
    codes = codes_report(legacy_connection(tx), campaign_id)
    if codes:
        out["codes"] = codes
    return out


def policy_caps(
    tx: TxLike,
    policy: PolicyConfig,
    spec: CampaignSpec,
    *,
    campaign_id: str,
    site_timezone: str,
    now: float | None,
) -> dict[str, Any]:
    """Report rows for every policy budget that binds the campaign, named like its refusals.

    ``provider_budget:<provider>`` is the lifetime budget, ``provider_daily_budget:<provider>``
    the daily one by site day (from the campaign's first grant, and today), both with
    the usage of every campaign in that currency.
    """
    tx = as_tx(tx)
    out: dict[str, Any] = {}
    exp = currency_exponent(spec.currency)
    zone = ZoneInfo(site_timezone)
    first = tx.fetch_value(
        "SELECT min(created_at) FROM grants WHERE campaign_id = ?", (campaign_id,)
    )
    today = None if now is None else datetime.fromtimestamp(now, zone).date().isoformat()
    since = datetime.fromtimestamp(first, zone).date().isoformat() if first else today
    for applied in applied_budgets(policy, spec):
        scope = policy_scope(applied.provider, applied.currency)
        used: dict[str, Any] = {
            row[0]: row[1]
            for row in tx.fetch_all(
                "SELECT period, spend FROM cap_counters WHERE scope = :scope", {"scope": scope}
            )
        }
        common: dict[str, Any] = {"policy": True, "currency": applied.currency}
        if applied.missing:
            common["note"] = (
                f"{applied.provider} has policy budgets in other currencies only:"
                f" nothing may be spent in {applied.currency}"
            )
        if applied.budget.lifetime is not None:
            out[f"provider_budget:{applied.provider}"] = {
                "used": format_money(int(used.get("lifetime", 0)), exp),
                "limit": format_money(applied.budget.lifetime, exp),
                **common,
            }
        if applied.budget.daily is not None:
            days = {d for d in used if d != "lifetime" and (since is None or d >= since)}
            if today is not None:
                days.add(today)
            out[f"provider_daily_budget:{applied.provider}"] = {
                "limit": format_money(applied.budget.daily, exp),
                "used": {d: format_money(int(used.get(d, 0)), exp) for d in sorted(days)},
                **common,
            }
    return out
