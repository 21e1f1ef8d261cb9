"""The campaign report: targeted, granted, refused by reason, spend against every cap, per day.

The caps include the site-wide policy budgets that bind the campaign (its reward
providers' budgets in its currency), named as their refusals are
(``provider_budget:wallet_points``, ``provider_daily_budget:wallet_points``).

report = await campaign_report(db, "winback-30d")
report["granted"], report["refused"], report["spend"]
"""

from __future__ import annotations

import csv
import io
import sqlite3
from typing import Any

from promod.campaigns.policy import policy_caps
from promod.campaigns.spec import currency_exponent
from promod.campaigns.store import CampaignRow, get_sync
from promod.clearance.store import campaign_section_sync
from promod.codepool.report import codes_report
from promod.config import PolicyConfig
from promod.live.report import live_report
from promod.units import format_money


def report_sync(
    conn: sqlite3.Connection,
    campaign_id: str,
    *,
    policy: PolicyConfig | None = None,
    site_timezone: str = "UTC",
    now: float | None = None,
) -> dict[str, Any] | None:
    """The report of one campaign (None if there is none).

    With ``policy``, its ``caps`` also list every policy budget that binds the
    campaign (site days in ``site_timezone``, today being the day of ``now``).
    """
    campaign = get_sync(conn, campaign_id)
    if campaign is None:
        return None
    exp = currency_exponent(campaign.spec.currency)

    def money(v: int | None) -> str | None:
        return None if v is None else format_money(int(v), exp)

    targets = dict(
        conn.execute(
            "SELECT t.status, count(*) FROM run_targets t JOIN runs r ON r.id = t.run_id"
            " WHERE r.campaign_id = ? GROUP BY t.status",
            (campaign_id,),
        ).fetchall()
    )
    refused = dict(
        conn.execute(
            "SELECT t.reason, count(*) FROM run_targets t JOIN runs r ON r.id = t.run_id"
            " WHERE r.campaign_id = ? AND t.status = 'refused' GROUP BY t.reason ORDER BY 2 DESC",
            (campaign_id,),
        ).fetchall()
    )
    grants = {
        row[0]: (row[1], row[2])
        for row in conn.execute(
            "SELECT state, count(*), coalesce(sum(value_minor), 0) FROM grants"
            " WHERE campaign_id = ? GROUP BY state",
            (campaign_id,),
        )
    }
    granted = sum(n for state, (n, _) in grants.items() if state != "failed")
    spend = sum(v for state, (_, v) in grants.items() if state != "failed")
    per_day = [
        {"day": row[0], "granted": row[1], "spend": money(row[2])}
        for row in conn.execute(
            "SELECT day, count(*), sum(value_minor) FROM grants WHERE campaign_id = ?"
            " AND state != 'failed' GROUP BY day ORDER BY day",
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
        for row in conn.execute(
            "SELECT id, seq, state, started_at, finished_at, targeted FROM runs"
            " WHERE campaign_id = ? ORDER BY seq",
            (campaign_id,),
        )
    ]
    (customers,) = conn.execute(
        "SELECT count(*) FROM customer_caps WHERE campaign_id = ? AND grants > 0", (campaign_id,)
    ).fetchone()
    report: dict[str, Any] = {
        "id": campaign.id,
        "state": campaign.state,
        "paused_reason": campaign.paused_reason,
        "currency": campaign.spec.currency,
        "targeted": sum(r["targeted"] for r in runs),
        "granted": granted,
        "customers": customers,
        "issuing": grants.get("reserved", (0, 0))[0],
        "failed": grants.get("failed", (0, 0))[0],
        "pending": targets.get("pending", 0),
        "held": targets.get("held", 0),
        "refused": refused,
        "spend": money(spend),
        "caps": caps_usage(conn, campaign, spend, granted, customers, money),
        "per_day": per_day,
        "runs": runs,
    }
    if policy is not None:
        report["caps"].update(
            policy_caps(
                conn,
                policy,
                campaign.spec,
                campaign_id=campaign_id,
                site_timezone=site_timezone,
                now=now,
            )
        )
    extra = _extra_sections(conn, campaign_id)
    if extra:
        report.update(extra)
    return report


def caps_usage(
    conn: sqlite3.Connection,
    campaign: CampaignRow,
    spend: int,
    granted: int,
    customers: int,
    money: Any,
) -> dict[str, Any]:
    caps = campaign.spec.caps
    out: dict[str, Any] = {}
    if caps.audience is not None:
        out["audience"] = {"used": customers, "limit": caps.audience}
    if caps.count is not None:
        out["count"] = {"used": granted, "limit": caps.count}
    if caps.budget_minor is not None:
        out["budget"] = {"used": money(spend), "limit": money(caps.budget_minor)}
    if caps.daily_count is not None or caps.daily_budget_minor is not None:
        days = {
            row[0]: (row[1], row[2])
            for row in conn.execute(
                "SELECT period, count, spend FROM cap_counters WHERE scope = ?"
                " AND period != 'lifetime' ORDER BY period",
                (f"campaign:{campaign.id}",),
            )
        }
        if caps.daily_count is not None:
            out["daily_count"] = {
                "limit": caps.daily_count,
                "used": {d: c for d, (c, _) in days.items()},
            }
        if caps.daily_budget_minor is not None:
            out["daily_budget"] = {
                "limit": money(caps.daily_budget_minor),
                "used": {d: money(s) for d, (_, s) in days.items()},
            }
    out["per_customer"] = {"limit": caps.per_customer}
    return out


def _extra_sections(conn: sqlite3.Connection, campaign_id: str) -> dict[str, Any]:
    """The sections of the parts that apply to this campaign: clearance, live, codes."""
    out: dict[str, Any] = {}
    clearance = campaign_section_sync(conn, campaign_id)
    if clearance:
        out["clearance"] = clearance
    live = live_report(conn, campaign_id)
    if live is not None:
        out["live"] = live
    codes = codes_report(conn, campaign_id)
    if codes:
        out["codes"] = codes
    return out


def report_csv(report: dict[str, Any]) -> str:
    """One row per day, then the totals and refusals, for spreadsheets."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["section", "key", "granted", "spend"])
    for day in report["per_day"]:
        writer.writerow(["day", day["day"], day["granted"], day["spend"]])
    writer.writerow(["total", "targeted", report["targeted"], ""])
    writer.writerow(["total", "granted", report["granted"], report["spend"]])
    for reason, n in report["refused"].items():
        writer.writerow(["refused", reason, n, ""])
    return buf.getvalue()
