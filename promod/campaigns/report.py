"""The campaign report: every target counted once, spend against every cap, per day.

``report_sync`` builds one structure; ``report_rows`` flattens it into the rows the
CSV writes and the text report prints, so JSON, CSV and text carry the same figures.
Every target is in exactly one of granted (issued), refused, pending, held, issuing
(a provider is issuing its reward) and failed, and the report states the sum::

    report = await db.run_sync(lambda conn: report_sync(conn, "winback-30d"))
    report["granted"], report["refused"], report["spend"], report["balance"]["holds"]

The caps include the site-wide policy budgets that bind the campaign (its reward
providers' budgets in its currency), named as their refusals are
(``provider_budget:wallet_points``, ``provider_daily_budget:wallet_points``).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from promod.campaigns.policy import policy_caps
from promod.campaigns.spec import currency_exponent
from promod.campaigns.store import CampaignRow, get_sync
from promod.clearance.store import campaign_section_sync
from promod.codepool.report import codes_report
from promod.config import PolicyConfig
from promod.ledger import killswitch
from promod.live.report import live_report
from promod.store.seam import SqliteTransaction
from promod.units import format_money

# The figures every target of a campaign is counted in exactly once.
BALANCE = ("granted", "refused", "pending", "held", "issuing", "failed")
EQUATION = "targeted = " + " + ".join(BALANCE)


def report_sync(
    conn: sqlite3.Connection,
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
    campaign = get_sync(conn, campaign_id)
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
    for status, reason, grant_state, n in conn.execute(
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
        for row in conn.execute(
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
        for row in conn.execute(
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
        for row in conn.execute(
            "SELECT id, seq, state, started_at, finished_at, targeted FROM runs"
            " WHERE campaign_id = ? ORDER BY seq",
            (campaign_id,),
        )
    ]
    (customers,) = conn.execute(
        "SELECT count(*) FROM customer_caps WHERE campaign_id = ? AND grants > 0", (campaign_id,)
    ).fetchone()
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
        "kill_switch": kill_switch_sync(conn),
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
        "caps": caps_usage(conn, campaign, money),
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


def kill_switch_sync(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """``{"engaged_at", "by"}`` while the kill switch is engaged, else None."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (killswitch.KEY,)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def caps_usage(conn: sqlite3.Connection, campaign: CampaignRow, money: Any) -> dict[str, Any]:
    """Each cap: its limit and what its counter holds (rewards issued and being issued).

    Every entry is ``{"used", "limit"}``; ``used`` of a daily cap maps each day to its
    figure. Text and CSV render any such entry, so more caps can be listed here.
    """
    caps = campaign.spec.caps
    scope = f"campaign:{campaign.id}"
    counters = {
        str(row[0]): (int(row[1]), int(row[2]), int(row[3]))
        for row in conn.execute(
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


def _extra_sections(conn: sqlite3.Connection, campaign_id: str) -> dict[str, Any]:
    """The sections of the parts that apply to this campaign: clearance, live, codes."""
    out: dict[str, Any] = {}
    clearance = campaign_section_sync(conn, campaign_id)
    if clearance:
        out["clearance"] = clearance
    live = live_report(SqliteTransaction(conn), campaign_id)
    if live is not None:
        out["live"] = live
    codes = codes_report(conn, campaign_id)
    if codes:
        out["codes"] = codes
    return out


def report_rows(report: Mapping[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """Every figure of a report as ``(section, key, value, limit)``, in reading order.

    CSV writes these rows and the text report prints the same ones, so the two never
    carry different numbers.
    """
    rows: list[tuple[str, str, Any, Any]] = []
    kill = report.get("kill_switch")
    if kill:
        rows.append(("kill_switch", "engaged_at", kill.get("engaged_at"), None))
        rows.append(("kill_switch", "by", kill.get("by"), None))
    rows += [
        ("campaign", "id", report["id"], None),
        ("campaign", "state", report["state"], None),
        ("campaign", "paused_reason", report.get("paused_reason"), None),
    ]
    paused = report.get("paused") or {}
    for who in ("operator", "automatic"):
        for key, value in (paused.get(who) or {}).items():
            rows.append(("paused", f"{who}.{key}", value, None))
    rows.append(("total", "targeted", report["targeted"], None))
    for key in BALANCE:
        rows.append(
            ("total", key, report[key] if key != "refused" else report["balance"][key], None)
        )
    balance = report["balance"]
    rows.append(("balance", balance["equation"], balance["sum"], None))
    rows.append(("balance", "holds", balance["holds"], None))
    rows.append(("total", "customers", report["customers"], None))
    rows.append(("total", "spend", report["spend"], None))
    rows.append(("total", "currency", report.get("currency"), None))
    for reason, n in report["refused"].items():
        rows.append(("refused", reason, n, None))
    for reason, n in report.get("pending_by_reason", {}).items():
        rows.append(("pending", reason, n, None))
    for state, figures in report.get("grants", {}).items():
        rows.append(("grants", f"{state}.count", figures["count"], None))
        rows.append(("grants", f"{state}.value", figures["value"], None))
    for name, usage in report.get("caps", {}).items():
        used = usage.get("used")
        if isinstance(used, Mapping):
            if not used:
                rows.append(("caps", name, None, usage.get("limit")))
            for day, value in used.items():
                rows.append(("caps", f"{name}.{day}", value, usage.get("limit")))
        else:
            rows.append(("caps", name, used, usage.get("limit")))
        for key, value in usage.items():  # policy, currency, note, ...
            if key not in ("used", "limit"):
                rows.append(("caps", f"{name}.{key}", value, None))
    for day in report.get("per_day", []):
        rows.append(("day", f"{day['day']}.granted", day["granted"], None))
        rows.append(("day", f"{day['day']}.spend", day["spend"], None))
    for run in report.get("runs", []):
        for key in ("state", "started_at", "finished_at", "targeted"):
            rows.append(("run", f"{run['seq']}.{key}", run[key], None))
    for section in SECTIONS:
        value = report.get(section)
        if isinstance(value, Mapping):
            rows += [(section, key, v, None) for key, v in _flat(value)]
    return rows


# The parts' own sections, in the order they are shown.
SECTIONS = ("live", "clearance", "codes")


def _flat(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            nested = _flat(value, f"{name}.")
            out += nested or [(name, None)]
        else:
            out.append((name, value))
    return out


def report_csv(report: Mapping[str, Any]) -> str:
    """``section,key,value,limit``: every figure of the report, for spreadsheets."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["section", "key", "value", "limit"])
    for section, key, value, limit in report_rows(report):
        writer.writerow([section, key, _cell(value), _cell(limit)])
    return buf.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
