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
    paused = describe_pause(result.get("paused"))
    if paused:
        head["paused"] = paused
    return render_kv({**{k: v for k, v in head.items() if v is not None}, **result["summary"]})


def describe_pause(paused: Any) -> str | None:
    """``by operator alice at ...; daily_cap:count by ledger at ..., until ...``."""
    if not isinstance(paused, Mapping):
        return None
    parts = []
    hold = paused.get("operator")
    if isinstance(hold, Mapping):
        when = format_timestamp(hold["at"]) if hold.get("at") is not None else "?"
        parts.append(f"by operator {hold.get('by')} at {when} (until an operator resumes)")
    auto = paused.get("automatic")
    if isinstance(auto, Mapping):
        text = f"{auto.get('reason')} by {auto.get('by') or 'promod'}"
        if auto.get("at") is not None:
            text += f" at {format_timestamp(auto['at'])}"
        if auto.get("until") is not None:
            text += f", until {format_timestamp(auto['until'])}"
        parts.append(text)
    return "; ".join(parts) or None


def run_report(command: Any, client: AdminClient, ns: argparse.Namespace) -> Any:
    args: dict[str, Any] = {"campaign": ns.p_campaign}
    if getattr(ns, "p_csv", False):
        args["format"] = "csv"
    return client.call("campaign.report", args)


def render_report(result: Any) -> str:
    """The report as text: the same rows as ``--csv`` (``report_rows``), by section."""
    # Imported here: the report module brings the campaign spec and the store, which
    # every other promodctl command does without (it starts in a fraction of the time).
    from promod.campaigns.report import report_rows

    if isinstance(result, Mapping) and "csv" in result:
        return str(result["csv"]).rstrip("\n")
    sections: dict[str, dict[str, Any]] = {}
    caps = result.get("caps") or {}
    for section, key, value, limit in report_rows(result):
        shown = _report_value(key, value)
        if limit is not None:
            shown = f"{shown} / {limit}"
        if section == "caps":
            name, dot, rest = key.partition(".")
            if isinstance(caps.get(name), Mapping) and caps[name].get("policy"):
                key = f"{name} (policy){dot}{rest}"  # a site-wide budget, not the campaign's
        sections.setdefault(section, {})[key] = shown
    lines: list[str] = []
    kill = result.get("kill_switch")
    if kill:
        when = format_timestamp(kill["engaged_at"]) if kill.get("engaged_at") else "?"
        lines += [f"KILL SWITCH ENGAGED since {when} by {kill.get('by')}: no grants", ""]
        sections.pop("kill_switch", None)
    head = sections.pop("campaign", {})
    state = head.get("state", "")
    if result.get("paused_reason"):
        state += f" ({result['paused_reason']})"
    summary: dict[str, Any] = {"campaign": head.get("id"), "state": state}
    paused = describe_pause(result.get("paused"))
    if paused:
        summary["paused"] = paused
    sections.pop("paused", None)
    summary.update(sections.pop("total", {}))
    lines.append(render_kv(summary))
    balance = result["balance"]
    verdict = "holds" if balance["holds"] else "DOES NOT HOLD"
    lines.append(f"check: {balance['equation']} = {balance['sum']} ({verdict})")
    sections.pop("balance", None)
    for section, values in sections.items():
        lines += ["", f"{_SECTION_TITLES.get(section, section)}:", render_kv(values, indent=2)]
    return "\n".join(lines)


_SECTION_TITLES = {
    "refused": "refused by reason",
    "pending": "pending by reason",
    "grants": "rewards (reserved = issued + issuing)",
    "caps": "caps (used / limit)",
    "day": "per day",
    "run": "runs",
}


def _report_value(key: str, value: Any) -> Any:
    if key.endswith("_at") and isinstance(value, int | float) and not isinstance(value, bool):
        return format_timestamp(value)
    return "-" if value is None else value


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
