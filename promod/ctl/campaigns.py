"""promodctl's campaign and kill switch commands: reading spec files, rendering reports.

promodctl campaign apply -f winback.toml
promodctl campaign report winback-30d [--csv]
promodctl kill [--release]
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promod.ctl.client import AdminClient, CommandError
from promod.ctl.render import format_timestamp, render_kv, render_table


def run_apply(command: Any, client: AdminClient, ns: argparse.Namespace) -> Any:
    path = Path(ns.p_file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError("invalid_args", f"cannot read {path}: {exc.strerror}") from None
    fmt = "json" if path.suffix.lower() == ".json" else "toml"
    return client.call("campaign.apply", {"spec": text, "format": fmt})


def render_apply(result: Any) -> str:
    if not isinstance(result, Mapping):
        return str(result)
    if not result.get("changed", True):
        head = f"{result['id']}: unchanged (version {result['version']})"
    else:
        verb = "created" if result.get("created") else "updated"
        head = f"{result['id']}: {verb}, version {result['version']}"
    lines = [head]
    for warning in result.get("warnings", []):
        lines.append(f"warning: {warning['path']}: {warning['message']}")
    return "\n".join(lines)


def render_campaigns(result: Any) -> str:
    rows = [
        {
            "id": c["id"],
            "state": c["state"],
            "kind": c["kind"],
            "version": c["version"],
            "reason": c.get("paused_reason") or "",
            "next run": format_timestamp(c["next_run_at"]) if c.get("next_run_at") else "",
        }
        for c in result
    ]
    return render_table(rows, empty="(no campaigns)")


_SHOW_HEAD = (
    "id",
    "state",
    "version",
    "paused_reason",
    "paused_until",
    "pilot",
    "next_run_at",
    "launched_at",
    "updated_at",
)


def render_campaign(result: Any) -> str:
    head = {k: result.get(k) for k in _SHOW_HEAD}
    return render_kv({**{k: v for k, v in head.items() if v is not None}, **result["summary"]})


def run_report(command: Any, client: AdminClient, ns: argparse.Namespace) -> Any:
    args: dict[str, Any] = {"campaign": ns.p_campaign}
    if getattr(ns, "p_csv", False):
        args["format"] = "csv"
    return client.call("campaign.report", args)


def render_report(result: Any) -> str:
    if isinstance(result, Mapping) and "csv" in result:
        return str(result["csv"]).rstrip("\n")
    lines = [
        render_kv(
            {
                "campaign": result["id"],
                "state": result["state"]
                + (f" ({result['paused_reason']})" if result.get("paused_reason") else ""),
                "targeted": result["targeted"],
                "granted": result["granted"],
                "pending": result["pending"],
                "spend": f"{result['spend']} {result.get('currency') or ''}".strip(),
            }
        )
    ]
    lines += _refused(result["refused"])
    caps = []
    for name, usage in result.get("caps", {}).items():
        used = usage.get("used")
        label = f"{name} (policy)" if usage.get("policy") else name
        if isinstance(used, Mapping):
            for day, value in used.items():
                caps.append({"cap": label, "day": day, "used": value, "limit": usage.get("limit")})
        elif used is not None:
            caps.append({"cap": label, "day": "", "used": used, "limit": usage.get("limit")})
    if caps:
        lines += ["", "caps:", render_table(caps)]
    if result.get("per_day"):
        lines += ["", "per day:", render_table(result["per_day"])]
    for extra in ("codes", "clearance"):
        if result.get(extra):
            lines += ["", f"{extra}:", render_kv(result[extra])]
    return "\n".join(lines)


def render_simulation(result: Any) -> str:
    currency = result.get("currency") or ""
    fields: dict[str, Any] = {
        "campaign": result["id"],
        "start": format_timestamp(result["start"]),
        "targeted": result["targeted"],
        "with consent": result["with_consent"] if result["with_consent"] is not None else "-",
    }
    clearance = result.get("clearance")
    if clearance:
        approved = result["if_all_approved"]
        fields["clearance"] = (
            f"required, {clearance['awaiting_approval']} sent for approval"
            f" (unanswered: {clearance['on_timeout']})"
        )
        fields["granted"] = (
            f"{result['granted']} without approval; {approved['granted']} if all are approved"
        )
        fields["spend"] = (
            f"{result['spend']} {currency} without approval;"
            f" {approved['spend']} {currency} if all are approved"
        )
    else:
        fields["granted"] = result["granted"]
        fields["spend"] = f"{result['spend']} {currency}".strip()
    fields["days"] = result["days"]
    runs = result.get("runs") or []
    if result.get("horizon"):
        horizon = result["horizon"]
        fields["runs"] = (
            f"{len(runs)} projected until {format_timestamp(horizon['until'])}"
            f" ({horizon['span']} ahead)"
        )
    lines = [render_kv(fields), "", render_table(result["funnel"])]
    lines += _refused(result["refused"])
    binding = result.get("binding_cap")
    if binding:
        lines += ["", f"binds first: {binding['cap']} ({binding['kind']}) on {binding['day']}"]
    note = " (if all are approved)" if clearance else ""
    if len(runs) > 1:
        rows = [{**r, "start": format_timestamp(r["start"])} for r in runs]
        lines += ["", f"runs{note}:", render_table(rows)]
    if result.get("per_day") and len(result["per_day"]) > 1:
        lines += ["", f"per day{note}:", render_table(result["per_day"])]
    return "\n".join(lines)


def _refused(refused: Mapping[str, int]) -> list[str]:
    """The "refused by reason" block of a report or a dry run (nothing when none)."""
    if not refused:
        return []
    rows = [{"reason": reason, "customers": n} for reason, n in refused.items()]
    return ["", "refused:", render_table(rows)]


def run_kill(command: Any, client: AdminClient, ns: argparse.Namespace) -> Any:
    return client.call("kill.release" if ns.p_release else "kill.engage", {})


def render_kill(result: Any) -> str:
    if result.get("engaged"):
        return "kill switch ENGAGED: no grants and no marketing messages until released"
    return "kill switch released"
