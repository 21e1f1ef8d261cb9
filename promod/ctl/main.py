"""``promodctl``: the operators' front end of the admin socket.

``promodctl [--socket PATH] [--config PATH] [--json] [--timeout S] COMMAND ...``. Every
subcommand is one :class:`CtlCommand` row of :data:`COMMANDS`; its words joined by dots
name the daemon command (``campaign pause X`` -> ``campaign.pause {"campaign": "X"}``).
Adding a subcommand is adding one row::

    CtlCommand("campaign pause", "pause a running campaign",
               params=(param("campaign", help="campaign id"),))

``--json`` may stand anywhere on the line (``promodctl campaign report X --json``).
Human output shows times as ISO 8601 in the site's time zone (``[daemon] timezone``, from
the daemon's ``ping``); ``--json`` prints the daemon's result as it is (Unix times).
Output into a pipe that closes early (``| head``) ends quietly with exit status 0.

Exit status: 0 ok, 1 refused or failed (``promodctl: CODE: message`` on stderr), 2 usage,
3 daemon unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promod import __version__
from promod.ctl.campaigns import (
    render_apply,
    render_campaign,
    render_campaigns,
    render_kill,
    render_report,
    render_simulation,
    run_apply,
    run_kill,
    run_report,
)
from promod.ctl.clearance import render_clearance_run, render_clearance_runs
from promod.ctl.client import AdminClient, CommandError, DaemonUnreachable
from promod.ctl.codes import (
    render_generate,
    render_import,
    render_pools,
    render_redeem,
    render_revoke,
    render_stats,
    run_generate,
    run_import,
    run_revoke,
)
from promod.ctl.crm import (
    render_crm_list,
    render_crm_run,
    render_crm_runs,
    render_crm_status,
    run_crm_sync,
)
from promod.ctl.imports import (
    render_customer,
    render_import_summary,
    run_customers_import,
    run_events_import,
)
from promod.ctl.lists import render_list, render_list_change, render_lists, run_lists_import
from promod.ctl.outbox import ACTIONS as OUTBOX_ACTIONS
from promod.ctl.outbox import render_outbox, run_outbox
from promod.ctl.render import (
    format_timestamp,
    render_kv,
    render_table,
    render_value,
    set_site_timezone,
)
from promod.ctl.tags import (
    render_tag,
    render_tag_apply,
    render_tag_edit,
    render_tag_history,
    render_tag_rules,
    render_tag_simulation,
    render_tags,
    run_tags_file,
)
from promod.ctl.usage import UsageError

__all__ = [
    "COMMANDS",
    "DEFAULT_SOCKET",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CtlCommand",
    "Param",
    "UsageError",
    "build_parser",
    "main",
    "param",
    "resolve_socket",
]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
DEFAULT_SOCKET = Path("/run/promod/admin.sock")
DEFAULT_TIMEOUT = 30.0
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Param:
    """One command-line argument and the request argument it fills."""

    flags: tuple[str, ...]  # ("campaign",) positional, or ("--since", "-s")
    arg: str | None  # request argument name; None: not sent (a custom runner reads it)
    options: Mapping[str, Any] = field(default_factory=dict)  # add_argument keywords

    @property
    def dest(self) -> str:
        name = self.arg or self.flags[0].lstrip("-")
        return "p_" + name.replace("-", "_")


def param(*flags: str, arg: str | None = "", **options: Any) -> Param:
    """A :class:`Param`; ``arg`` defaults to the flag's name (``--dry-run`` -> ``dry_run``)."""
    if not flags:
        raise ValueError("param needs a name or flags")
    if arg == "":
        arg = max(flags, key=len).lstrip("-").replace("-", "_")
    return Param(flags=tuple(flags), arg=arg, options=options)


Renderer = Callable[[Any], str]
Runner = Callable[["CtlCommand", AdminClient, argparse.Namespace], Any]


@dataclass(frozen=True)
class CtlCommand:
    """One ``promodctl`` subcommand: words, help, parameters, how to run and show it."""

    words: str  # "status", "campaign pause"
    help: str
    params: tuple[Param, ...] = ()
    cmd: str | None = None  # daemon command; default: the words joined by dots
    render: Renderer = render_value  # human output of the result
    run: Runner | None = None  # custom request(s); default: one call with the params' args
    timeout: float | None = None  # overrides --timeout's default for long work
    description: str = ""

    @property
    def command(self) -> str:
        return self.cmd or ".".join(self.words.split())

    def request_args(self, ns: argparse.Namespace) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for p in self.params:
            value = getattr(ns, p.dest, None)
            if p.arg is not None and value is not None:
                args[p.arg] = value
        return args


def call_default(command: CtlCommand, client: AdminClient, ns: argparse.Namespace) -> Any:
    return client.call(command.command, command.request_args(ns))


# ---------------------------------------------------------------- renderers


def _when(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format_timestamp(value)
    return value


def render_status(result: Any) -> str:
    if not isinstance(result, Mapping):
        return render_value(result)
    shown = dict(result)
    actors = shown.pop("actors", None)
    kill = shown.pop("kill_switch", None)
    for key in ("started_at", "time"):
        if key in shown:
            shown[key] = _when(shown[key])
    text = render_kv(shown)
    if isinstance(kill, Mapping):
        banner = (
            f"KILL SWITCH ENGAGED since {_when(kill.get('engaged_at'))} by {kill.get('by')}:"
            " no grants and no marketing messages until released"
        )
        text = banner + "\n\n" + text
    if isinstance(actors, list):
        text += "\n\n" + render_actors(actors)
    return text


def render_actors(result: Any) -> str:
    if not isinstance(result, list):
        return render_value(result)
    rows = [{**row, "started_at": _when(row.get("started_at"))} for row in result]
    return render_table(
        rows, ["name", "state", "restarts", "restart_type", "started_at", "last_error"]
    )


def render_plugins(result: Any) -> str:
    if not isinstance(result, list):
        return render_value(result)
    rows = []
    for row in result:
        registers = row.get("registers") or ()
        if isinstance(registers, Mapping):
            registers = [f"{kind}:{name}" for kind, names in registers.items() for name in names]
        rows.append({**row, "registers": list(registers), "health": _health(row.get("health"))})
    table = render_table(rows, ["name", "version", "source", "hooks", "registers", "health"])
    types = [kind for row in result for kind in row.get("types") or ()]
    return "\n\n".join([table.rstrip("\n"), *(render_options(kind) for kind in types)]) + "\n"


def render_options(plugin_type: Mapping[str, Any]) -> str:
    """``channel smtp`` and one line per option: name, type, required or default, help."""
    schema = plugin_type.get("options") or {}
    lines = [f"{plugin_type.get('kind')} {plugin_type.get('type')} options:"]
    properties = schema.get("properties") or {}
    if not properties:
        lines.append("  (none)" if schema else "  (not declared: the plugin checks them itself)")
    required = set(schema.get("required") or ())
    definitions = schema.get("$defs") or {}
    for name, prop in properties.items():
        kind = _schema_type(prop, definitions)
        if name in required:
            need = "required"
        elif "default" in prop and prop["default"] not in (None, [], {}):
            need = f"default {json.dumps(prop['default'])}"
        else:
            need = "optional"
        text = f"  {name:<14} {kind:<22} {need}"
        if prop.get("description"):
            text += f"  {prop['description']}"
        lines.append(text.rstrip())
        nested = _nested(prop, definitions)
        for sub, sub_prop in (nested.get("properties") or {}).items():
            sub_need = "required" if sub in set(nested.get("required") or ()) else "optional"
            lines.append(
                f"    {name}.{sub:<10} {_schema_type(sub_prop, definitions):<20} {sub_need}"
            )
    return "\n".join(lines)


def _nested(prop: Mapping[str, Any], definitions: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = prop.get("$ref")
    if isinstance(ref, str):
        return definitions.get(ref.rsplit("/", 1)[-1]) or {}
    return {}


def _schema_type(prop: Mapping[str, Any], definitions: Mapping[str, Any]) -> str:
    """A short type of a JSON Schema property: ``string``, ``integer 1..65535``, ``one of a|b``."""
    if "enum" in prop:
        return "one of " + "|".join(str(v) for v in prop["enum"])
    if "$ref" in prop:
        return "table"
    for key in ("anyOf", "oneOf"):
        if key in prop:
            parts = [_schema_type(p, definitions) for p in prop[key] if p.get("type") != "null"]
            return " or ".join(parts)
    kind = prop.get("type", "any")
    if isinstance(kind, list):
        kind = " or ".join(str(k) for k in kind)
    if kind == "array" and isinstance(prop.get("items"), Mapping):
        return f"array of {_schema_type(prop['items'], definitions)}"
    if "minimum" in prop and "maximum" in prop:
        return f"{kind} {prop['minimum']}..{prop['maximum']}"
    if "pattern" in prop and "duration" not in kind:
        if "ms|s|m|h|d" in str(prop["pattern"]):
            return "duration"
    if prop.get("examples"):
        return f"{kind} ({json.dumps(prop['examples'][0])})"
    return str(kind)


def _health(health: Any) -> str:
    """``ok``, or each circuit that is not closed or has failed lately, in one cell."""
    if not isinstance(health, Mapping):
        return ""
    parts = []
    for circuit in health.get("circuits") or ():
        failures = circuit.get("recent_failures") or []
        if circuit.get("state") == "closed" and not failures:
            continue
        text = f"{circuit.get('name')} {circuit.get('state')}"
        details = []
        if failures:
            last = str(failures[-1].get("error"))
            last = last if len(last) <= 80 else last[:77] + "..."
            details.append(f"{len(failures)} recent failures, last: {last}")
        if circuit.get("retry_in"):
            details.append(f"probe in {circuit['retry_in']:.1f}s")
        parts.append(text + (f" ({'; '.join(details)})" if details else ""))
    return "; ".join(parts) or str(health.get("state", "ok"))


def render_audit(result: Any) -> str:
    if not isinstance(result, list):
        return render_value(result)
    return render_table(result, ["id", "ts", "user", "role", "command", "args", "outcome", "error"])


def render_help(result: Any) -> str:
    if isinstance(result, list):
        rows = [row for row in result if row.get("allowed", True)]
        return render_table(rows, ["name", "role", "summary"])
    if isinstance(result, Mapping):
        lines = [f"usage: {result.get('usage') or result.get('name')}", ""]
        lines.append(str(result.get("summary", "")))
        role = result.get("role")
        lines.append(f"role: {role or 'anyone'}; mutating: {result.get('mutating')}")
        args = result.get("args") or {}
        if args:
            lines.append("")
            lines.append(
                render_table(
                    [{"arg": name, **spec} for name, spec in args.items()],
                    ["arg", "type", "required", "help"],
                )
            )
        return "\n".join(lines)
    return render_value(result)


def render_log_level(result: Any) -> str:
    if isinstance(result, Mapping) and "previous" in result:
        return f"log level {result['previous']} -> {result['level']}"
    if isinstance(result, Mapping):
        return f"log level {result.get('level')}"
    return render_value(result)


def render_ping(result: Any) -> str:
    if isinstance(result, Mapping):
        role = result.get("role") or "no role"
        return f"pong ({result.get('user')}, {role})"
    return render_value(result)


def render_version(result: Any) -> str:
    if isinstance(result, Mapping):
        return f"promod {result.get('version')} (promodctl {__version__})"
    return render_value(result)


def run_call(command: CtlCommand, client: AdminClient, ns: argparse.Namespace) -> Any:
    text = ns.p_json_args
    if text == "-":
        text = sys.stdin.read()
    try:
        args = json.loads(text) if text else {}
    except ValueError as exc:
        raise UsageError(f"call: JSON_ARGS is not valid JSON: {exc}") from None
    if not isinstance(args, dict):
        raise UsageError("call: JSON_ARGS must be a JSON object")
    return client.call(ns.p_target, args)


# ---------------------------------------------------------------- the table

COMMANDS: tuple[CtlCommand, ...] = (
    CtlCommand("status", "daemon status", render=render_status),
    CtlCommand("actors", "supervised actors and servers", render=render_actors),
    CtlCommand("plugins", "loaded plugins", render=render_plugins),
    CtlCommand(
        "log-level",
        "show or set the daemon's log level",
        params=(param("level", nargs="?", choices=LOG_LEVELS, help="new level"),),
        render=render_log_level,
    ),
    CtlCommand(
        "audit",
        "read the audit log",
        params=(
            param("--since", help="ISO time, or a duration back from now (1h, 30m, 7d)"),
            param("--limit", type=int, help="at most N newest rows (default 100)"),
            param("--command", help="only rows of this daemon command"),
        ),
        render=render_audit,
    ),
    CtlCommand("ping", "check the daemon answers", render=render_ping),
    CtlCommand("version", "the daemon's version", render=render_version),
    CtlCommand(
        "help",
        "list the daemon's commands, or describe one",
        params=(param("command", nargs="?", help="daemon command, e.g. campaign.pause"),),
        render=render_help,
    ),
    CtlCommand(
        "call",
        "run any daemon command: call CMD [JSON_ARGS]",
        params=(
            param("target", arg=None, metavar="CMD", help="daemon command, e.g. status"),
            param(
                "json_args",
                arg=None,
                nargs="?",
                metavar="JSON_ARGS",
                help="arguments as a JSON object ('-' reads stdin)",
            ),
        ),
        run=run_call,
    ),
    CtlCommand(
        "campaign apply",
        "create or update a campaign from a TOML or JSON spec",
        params=(param("--file", "-f", arg=None, required=True, metavar="FILE", help="spec file"),),
        run=run_apply,
        render=render_apply,
    ),
    CtlCommand("campaign list", "every campaign and its state", render=render_campaigns),
    CtlCommand(
        "campaign show",
        "a campaign's state and spec",
        params=(param("campaign"),),
        render=render_campaign,
    ),
    CtlCommand(
        "campaign simulate",
        "dry run: audience, clearance, caps, projected spend and runs, which cap binds when",
        params=(
            param("campaign"),
            param("--horizon", metavar="DURATION", help="project recurring runs this far (30d)"),
        ),
        render=render_simulation,
        timeout=600.0,
    ),
    CtlCommand(
        "campaign launch",
        "launch a draft campaign",
        params=(
            param("campaign"),
            param("--pilot", metavar="N|P%", help="a slice first, then wait"),
        ),
    ),
    CtlCommand("campaign pause", "pause a campaign", params=(param("campaign"),)),
    CtlCommand("campaign resume", "resume a paused campaign", params=(param("campaign"),)),
    CtlCommand("campaign stop", "stop a campaign for good", params=(param("campaign"),)),
    CtlCommand(
        "campaign report",
        "targeted, granted, refused by reason, spend per cap and day",
        params=(
            param("campaign"),
            param("--csv", arg=None, action="store_true", help="CSV output"),
        ),
        run=run_report,
        render=render_report,
    ),
    CtlCommand(
        "clearance list",
        "runs awaiting or past clearance, with approval counts",
        params=(param("--campaign", help="only this campaign"), param("--limit", type=int)),
        render=render_clearance_runs,
    ),
    CtlCommand(
        "clearance show",
        "one clearance run: approved, rejected, unanswered, granted, capped, rate",
        params=(param("run", type=int, help="run id"),),
        render=render_clearance_run,
    ),
    CtlCommand(
        "kill",
        "engage the global kill switch (or --release it)",
        params=(param("--release", arg=None, action="store_true", help="release it"),),
        run=run_kill,
        render=render_kill,
    ),
    CtlCommand(
        "customers import",
        "import customers from a CSV or JSON-lines file, all or nothing",
        params=(
            param("file", arg=None, metavar="FILE", help="a .csv or .jsonl file"),
            param("--format", arg=None, choices=("jsonl", "csv"), help="default: by extension"),
        ),
        run=run_customers_import,
        render=render_import_summary,
        timeout=600.0,
    ),
    CtlCommand(
        "customers show",
        "a customer's profile, tags, consents and attributes",
        params=(param("customer", help="customer id"),),
        render=render_customer,
    ),
    CtlCommand(
        "lists import",
        "fill a custom list from a file (ids one a line, CSV or JSONL with an id), all or"
        " nothing; replaces the list unless --add",
        params=(
            param("list", arg=None, metavar="NAME", help="list name"),
            param("file", arg=None, metavar="FILE", help=".csv, .jsonl, else one id a line"),
            param(
                "--format",
                arg=None,
                choices=("lines", "csv", "jsonl"),
                help="default: by extension",
            ),
            param("--add", arg=None, action="store_true", help="add to the list"),
            param(
                "--replace",
                arg=None,
                action="store_true",
                help="the file becomes the list (the default)",
            ),
        ),
        run=run_lists_import,
        render=render_list_change,
        timeout=600.0,
    ),
    CtlCommand("lists list", "every custom list with its size", render=render_lists),
    CtlCommand(
        "lists show",
        "a custom list: size, members without a profile, versions, campaigns using it",
        params=(param("list", help="list name"),),
        render=render_list,
    ),
    CtlCommand(
        "lists delete",
        "delete a custom list (refused while a live campaign uses it, unless --force)",
        params=(
            param("list", help="list name"),
            param("--force", action="store_true", help="even though live campaigns use it"),
        ),
    ),
    CtlCommand(
        "crm list", "CRM connectors: schedule, last run, list size, state", render=render_crm_list
    ),
    CtlCommand(
        "crm status",
        "one CRM connector: last run, a held refresh, the run in progress",
        params=(param("name", help="the [crm.NAME] connector"),),
        render=render_crm_status,
    ),
    CtlCommand(
        "crm history",
        "the recent runs of a CRM connector: fetched, added, removed, suppressed, invalid",
        params=(
            param("name", help="the [crm.NAME] connector"),
            param("--limit", type=int, help="how many runs (default 20)"),
        ),
        render=render_crm_runs,
    ),
    CtlCommand(
        "crm sync",
        "refresh a CRM connector's list now and wait for it (progress on a terminal)",
        params=(param("name", help="the [crm.NAME] connector"),),
        run=run_crm_sync,
        render=render_crm_run,
        timeout=3600.0,
    ),
    CtlCommand(
        "crm apply",
        "apply a refresh held for changing the list by more than max_change",
        params=(param("name", help="the [crm.NAME] connector"),),
        render=render_crm_run,
        timeout=600.0,
    ),
    CtlCommand(
        "crm discard",
        "discard a held refresh; the list stays as it is",
        params=(param("name", help="the [crm.NAME] connector"),),
        render=render_crm_run,
    ),
    CtlCommand(
        "tags apply",
        "make a rules file the current tag rules (changed rules get a new version)",
        params=(param("--file", "-f", arg=None, required=True, metavar="FILE", help="rules file"),),
        run=run_tags_file,
        render=render_tag_apply,
    ),
    CtlCommand(
        "tags simulate",
        "dry run of a rules file: per rule, customers it would tag and untag now",
        params=(param("--file", "-f", arg=None, required=True, metavar="FILE", help="rules file"),),
        run=run_tags_file,
        render=render_tag_simulation,
        timeout=600.0,
    ),
    CtlCommand("tags list", "every tag: customers carrying it, its rule", render=render_tags),
    CtlCommand(
        "tags show",
        "one tag: customers by source, its rule, the latest changes",
        params=(param("tag"),),
        render=render_tag,
    ),
    CtlCommand(
        "tags rules",
        "the current tag rules, or every version of one",
        params=(param("name", nargs="?", help="a rule: list its versions"),),
        render=render_tag_rules,
    ),
    CtlCommand(
        "tags history",
        "tag changes, newest first: added or removed, by what, when",
        params=(
            param("--customer", help="only this customer"),
            param("--tag", help="only this tag"),
            param("--limit", type=int, help="at most N changes (default 100)"),
            param("--before", type=int, help="only changes older than this id"),
        ),
        render=render_tag_history,
    ),
    CtlCommand(
        "tags add",
        "tag a customer by hand (kept in the tag history)",
        params=(param("customer"), param("tag"), param("--reason", help="why")),
        render=render_tag_edit,
    ),
    CtlCommand(
        "tags remove",
        "untag a customer by hand (kept in the tag history)",
        params=(param("customer"), param("tag"), param("--reason", help="why")),
        render=render_tag_edit,
    ),
    CtlCommand(
        "events import",
        "import events from a JSON-lines file, all or nothing",
        params=(param("file", arg=None, metavar="FILE", help="a .jsonl file"),),
        run=run_events_import,
        render=render_import_summary,
        timeout=600.0,
    ),
    CtlCommand(
        "outbox",
        "outbox figures; list, retry or drop deliveries (dead letters)",
        params=(
            param("action", arg=None, nargs="?", choices=OUTBOX_ACTIONS, help="default status"),
            param("id", arg=None, nargs="?", type=int, help="delivery id (retry, drop)"),
            param("--state", arg=None, help="list: pending|sent|dead|skipped|dropped"),
            param("--channel", arg=None, help="list, retry --all: only this channel"),
            param("--limit", arg=None, type=int, help="list: at most N rows"),
            param("--all", arg=None, action="store_true", help="retry: every dead letter"),
        ),
        run=run_outbox,
        render=render_outbox,
    ),
    CtlCommand(
        "codes generate",
        "generate random unique codes into a pool (created if new)",
        params=(
            param("pool", help="pool name"),
            param("--count", "-n", type=int, required=True, help="how many codes"),
            param("--length", type=int, help="random characters (default 10)"),
            param("--charset", help="characters to draw from (default: no 0 O 1 I L)"),
            param("--pattern", help="e.g. XMAS-####-#### (# = random character)"),
            param("--prefix"),
            param("--postfix"),
            param("--expires", help="duration from now (60d) or ISO-8601 time or date"),
            param("--value", help="decimal value of each code"),
            param("--max-uses", type=int, help="shared coupons: redeemable N times in all"),
            param("--series", help="series of a new pool (codes unique across it)"),
        ),
        run=run_generate,
        render=render_generate,
        timeout=600.0,
    ),
    CtlCommand(
        "codes import",
        "import codes from a file (one a line, or CSV code,expiry,value), all or nothing",
        params=(
            param("pool", help="pool name"),
            param("file", arg=None, metavar="FILE"),
            param("--format", arg=None, choices=("lines", "csv"), help="default: by extension"),
            param("--series", arg=None, help="series of a new pool"),
            param("--max-uses", arg=None, type=int, help="shared coupons: uses per code"),
        ),
        run=run_import,
        render=render_import,
        timeout=600.0,
    ),
    CtlCommand(
        "codes stats",
        "codes per state, burn rate over the last day, projected run-out",
        params=(param("pool"),),
        render=render_stats,
    ),
    CtlCommand("codes pools", "every code pool", render=render_pools),
    CtlCommand(
        "codes configure",
        "create a pool or set its series and low-stock thresholds (0 turns one off)",
        params=(
            param("pool"),
            param("--series"),
            param("--low", type=int, help="alert at N available codes"),
            param("--low-percent", type=int, help="alert at P%% of the codes loaded"),
        ),
    ),
    CtlCommand(
        "codes revoke",
        "revoke one code of a pool, or --all-unassigned",
        params=(
            param("pool"),
            param("code", arg=None, nargs="?", help="the code"),
            param("--all-unassigned", arg=None, action="store_true"),
        ),
        run=run_revoke,
        render=render_revoke,
    ),
    CtlCommand("codes expire", "run the expiry sweep now"),
    CtlCommand(
        "codes redeem",
        "redeem a code for a customer",
        params=(param("code"), param("customer"), param("--ip", help="client address")),
        render=render_redeem,
    ),
)

GROUP_HELP: dict[str, str] = {
    "campaign": "campaigns: apply, launch, pause, report, ...",
    "crm": "CRM sync: list, status, history, sync, apply, discard",
    "tags": "tag rules and tags: apply, simulate, list, show, rules, history, add, remove",
}  # help of command groups, e.g. {"campaign": "campaigns"}


# ---------------------------------------------------------------- parser and main


def _print_path_errors(exc: CommandError) -> None:
    """Validation errors that name a key path (a campaign spec): one line each."""
    errors = (exc.details or {}).get("errors")
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, Mapping) and "path" in item:
                print(f"  {item['path']}: {item.get('message')}", file=sys.stderr)


def _json_flag(parser: argparse.ArgumentParser) -> None:
    """``--json`` after the command words too; SUPPRESS keeps an earlier ``--json`` set."""
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the result as JSON"
    )


def build_parser(commands: Sequence[CtlCommand] | None = None) -> argparse.ArgumentParser:
    """The argparse tree for ``commands`` (default: :data:`COMMANDS`)."""
    if commands is None:
        commands = COMMANDS
    parser = argparse.ArgumentParser(
        prog="promodctl",
        description="Control a running promod daemon over its admin socket.",
        epilog="exit status: 0 ok, 1 refused or failed, 2 usage, 3 daemon unreachable",
    )
    parser.add_argument(
        "--socket", metavar="PATH", help="admin socket (default: $PROMOD_SOCKET, the config's)"
    )
    parser.add_argument("--config", metavar="PATH", help="read admin_socket from this config")
    parser.add_argument("--json", action="store_true", help="print the raw result as JSON")
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help=f"seconds to wait for the daemon (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--version", action="version", version=f"promodctl {__version__}")
    root = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[tuple[str, ...], Any] = {(): root}
    for command in commands:
        words = tuple(command.words.split())
        for depth in range(1, len(words)):
            prefix = words[:depth]
            if prefix not in groups:
                helptext = GROUP_HELP.get(" ".join(prefix), f"{' '.join(prefix)} commands")
                group = groups[words[: depth - 1]].add_parser(prefix[-1], help=helptext)
                _json_flag(group)
                groups[prefix] = group.add_subparsers(
                    dest="_".join(("sub", *prefix)), metavar="COMMAND", required=True
                )
        sub = groups[words[:-1]].add_parser(
            words[-1], help=command.help, description=command.description or command.help
        )
        _json_flag(sub)
        for p in command.params:
            options = dict(p.options)
            if p.flags[0].startswith("-"):
                sub.add_argument(*p.flags, dest=p.dest, **options)
            else:
                options.setdefault("metavar", p.flags[0].upper())
                sub.add_argument(p.dest, **options)
        sub.set_defaults(ctl_command=command)
    return parser


def _config_socket(path: Path) -> Path | None:
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    daemon = data.get("daemon")
    value = daemon.get("admin_socket") if isinstance(daemon, dict) else None
    if not isinstance(value, str) or not value:
        return None
    socket_path = Path(value).expanduser()
    return socket_path if socket_path.is_absolute() else path.parent / socket_path


def resolve_socket(
    socket_opt: str | None, config_opt: str | None, environ: Mapping[str, str] | None = None
) -> Path:
    """--socket, else $PROMOD_SOCKET, else the config's admin_socket, else the default.

    The config is --config (must be readable) or $PROMOD_CONFIG (skipped when unreadable).
    """
    env = os.environ if environ is None else environ
    if socket_opt:
        return Path(socket_opt)
    if env.get("PROMOD_SOCKET"):
        return Path(env["PROMOD_SOCKET"])
    if config_opt:
        try:
            found = _config_socket(Path(config_opt))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"--config {config_opt}: {exc}") from None
        return found or DEFAULT_SOCKET
    if env.get("PROMOD_CONFIG"):
        try:
            found = _config_socket(Path(env["PROMOD_CONFIG"]))
        except (OSError, tomllib.TOMLDecodeError):
            found = None
        return found or DEFAULT_SOCKET
    return DEFAULT_SOCKET


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _site_timezone(client: AdminClient) -> str | None:
    """The daemon's ``[daemon] timezone`` (None from a daemon that does not say)."""
    try:
        answer = client.call("ping")
    except (CommandError, DaemonUnreachable):
        return None
    zone = answer.get("timezone") if isinstance(answer, Mapping) else None
    return zone if isinstance(zone, str) else None


def _stdout_closed() -> int:
    """The reader of our output went away (``| head``): stop quietly, successfully.

    stdout is pointed at /dev/null so that the interpreter's last flush at exit
    does not fail on the closed pipe again.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``promodctl`` with ``argv`` (default: sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        sys.stdout.flush()  # --help into a closed pipe fails here, not at exit
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except BrokenPipeError:
        return _stdout_closed()
    command: CtlCommand = ns.ctl_command
    zone: str | None = None
    try:
        socket_path = resolve_socket(ns.socket, ns.config)
        timeout = ns.timeout if ns.timeout is not None else command.timeout or DEFAULT_TIMEOUT
        if timeout <= 0:
            raise UsageError("--timeout must be positive")
        with AdminClient(socket_path, timeout=timeout) as client:
            result = (command.run or call_default)(command, client, ns)
            if not ns.json:
                zone = _site_timezone(client)
    except UsageError as exc:
        print(f"promodctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DaemonUnreachable as exc:
        print(f"promodctl: daemon unreachable: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except CommandError as exc:
        print(f"promodctl: {exc.code}: {exc.message}", file=sys.stderr)
        _print_path_errors(exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("promodctl: interrupted", file=sys.stderr)
        return 130
    try:
        if ns.json:
            _print_json(result)
        else:
            set_site_timezone(zone)
            print(command.render(result))
        sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    return EXIT_OK


if __name__ == "__main__":
    # Run the imported module, not this __main__ copy: runners raise
    # promod.ctl.main.UsageError, which must be the class main() catches.
    from promod.ctl import main as ctl_main

    sys.exit(ctl_main.main())
