"""Campaign specs: parse, validate and normalise what an operator applies (docs/campaigns.md).

Owns the campaign spec language: TOML or JSON text (or an already parsed dict)
becomes a frozen :class:`CampaignSpec`, or a :class:`SpecError` that lists every
issue at once with its key path (``reward.fallback.value: ...``). Unknown keys
are errors; money is decimal strings outside and integers of minor units inside;
notify texts may only use the placeholders of :data:`PLACEHOLDERS`.
:meth:`CampaignSpec.to_dict` gives the normalised form stored per version, which
parses back to an equal spec::

    spec = load_spec(Path("winback-30d.toml").read_text(), "toml",
                     default_timezone="UTC", providers={"wallet_points"}, channels={"mail"})
    spec.reward.value_minor        # 500 for value = "5.00" in EUR
    parse_spec(spec.to_dict(), default_timezone="UTC") == spec   # True
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from promod.campaigns.segments import (
    EVENT_OPTIONS,
    EventRule,
    Segment,
    SegmentError,
    parse_segment,
)
from promod.surrogates import SURROGATE_MESSAGE, find_surrogate
from promod.units import format_duration, format_money, parse_duration

__all__ = [
    "BUILTIN_PROVIDERS",
    "CURRENCY_EXPONENTS",
    "DELIVERIES",
    "KINDS",
    "PLACEHOLDERS",
    "AudienceRank",
    "CampaignSpec",
    "Caps",
    "Clearance",
    "Notify",
    "Recurrence",
    "Reward",
    "Schedule",
    "SpecError",
    "SpecIssue",
    "Trigger",
    "currency_exponent",
    "load_spec",
    "load_spec_file",
    "parse_spec",
    "placeholder_issues",
    "render_placeholders",
    "spec_warnings",
]

KINDS = ("past_behavior", "live_action", "custom_list")
DELIVERIES = ("immediate", "local_time", "best_time")
ON_TIMEOUT = ("reject", "approve")
BUILTIN_PROVIDERS = ("coupon", "code_pool", "wallet_points")
PLACEHOLDERS = frozenset(
    {
        "customer_id",
        "email",
        "reward_amount",
        "reward_code",
        "reward_value",
        "currency",
        "expires_at",
        "unsubscribe_url",
    }
)

#: ISO 4217 currencies whose minor unit is not 2 decimals; every other code has 2.
CURRENCY_EXPONENTS: Mapping[str, int] = {
    **dict.fromkeys(
        ("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split()),
        0,
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}
DEFAULT_EXPONENT = 2
DEFAULT_CLEARANCE_LEAD = 1800.0
DEFAULT_BEST_TIME_FALLBACK = time(10, 0)

_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_TEMPLATE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_RECURRING = re.compile(r"daily\s+(\S+)")
_MONEY = re.compile(r"(\d+)(?:\.(\d+))?")
_RANK = re.compile(r"attr:([^\s]+)\s+(asc|desc)")
_PLACEHOLDER = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^{}$]*)\}|(?P<stray>))")


_TOP_KEYS = (
    "id",
    "name",
    "description",
    "kind",
    "timezone",
    "schedule",
    "segment",
    "list",
    "trigger",
    "reward",
    "caps",
    "clearance",
    "notify",
)
_SCHEDULE_KEYS = ("start", "end", "recurring", "delivery", "local_time")
_REWARD_KEYS = ("provider", "amount", "value", "currency", "code", "pool", "options", "fallback")
_CAPS_KEYS = (
    "audience",
    "audience_rank",
    "budget",
    "daily_budget",
    "count",
    "daily_count",
    "per_customer",
)
_CLEARANCE_KEYS = ("required", "lead", "on_timeout")
_NOTIFY_KEYS = ("channel", "consent", "subject", "text", "html", "template")
_EVENT_TRIGGER_KEYS = ("event", *EVENT_OPTIONS)
_INACTION_KEYS = ("after", "missing", "within")


class SpecIssue(NamedTuple):
    """One problem in a spec: the key path (``caps.daily_budget``) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(spec)'}: {self.message}"


class SpecError(ValueError):
    """A campaign spec that cannot be applied; ``issues`` lists every problem found."""

    def __init__(self, issues: Iterable[tuple[str, str]]) -> None:
        self.issues: list[SpecIssue] = [SpecIssue(path, message) for path, message in issues]
        count = len(self.issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"{count} issue{'' if count == 1 else 's'} in campaign spec:\n{lines}")

    def as_dicts(self) -> list[dict[str, str]]:
        """The issues as ``[{"path", "message"}]`` for admin error details."""
        return [{"path": issue.path, "message": issue.message} for issue in self.issues]


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class Recurrence:
    """A repeating run: ``every`` is ``"daily"``, ``at`` a local time in the campaign zone."""

    every: Literal["daily"]
    at: time

    def __str__(self) -> str:
        return f"{self.every} {self.at:%H:%M}"


@dataclass(frozen=True)
class Schedule:
    """When the campaign runs and how grants reach each customer."""

    start: datetime | None = None  # None: "now" (when launched)
    end: datetime | None = None
    recurring: Recurrence | None = None
    delivery: str = "immediate"  # immediate | local_time | best_time
    local_time: time | None = None  # local_time: the time; best_time: the fallback


@dataclass(frozen=True)
class Trigger:
    """What starts a live_action grant: an event, or an expected event that did not come.

    Event form: ``rule`` is the segment language's event rule (``event``, ``where``,
    ``within``, and a count or ``sum`` comparison), matched when a customer's event
    arrives. Inaction form: ``after`` happened and ``missing`` did not follow ``within``.
    """

    rule: EventRule | None = None
    after: str | None = None
    missing: str | None = None
    within: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The trigger table as written in a spec."""
        if self.rule is not None:
            return Segment(self.rule).to_dict()
        out: dict[str, Any] = {"after": self.after, "missing": self.missing}
        if self.within is not None:
            out["within"] = format_duration(self.within)
        return out

    def describe(self) -> str:
        """One line for humans."""
        if self.rule is not None:
            return _compact(self.to_dict())
        window = format_duration(self.within) if self.within is not None else "?"
        return f"{self.after} without {self.missing} within {window}"


@dataclass(frozen=True)
class Reward:
    """What one grant gives, and what it costs.

    ``amount_minor`` is the reward's amount in units of ``10**-amount_exponent``:
    ``"500"`` points -> ``(500, 0)``; ``"5.00"`` -> ``(500, 2)`` (a decimal amount
    uses the currency's exponent). ``value_minor`` is the currency value of one
    reward in minor units of ``currency`` (exponent :func:`currency_exponent`).
    """

    provider: str
    amount_minor: int | None = None
    amount_exponent: int = 0
    value_minor: int | None = None
    currency: str | None = None
    code: str | None = None
    pool: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    fallback: Reward | None = None

    @property
    def exponent(self) -> int:
        """Decimal places of the reward's currency (2 when no currency is set)."""
        return currency_exponent(self.currency)

    @property
    def amount(self) -> str | None:
        """The amount as a decimal string (``"500"``, ``"5.00"``)."""
        if self.amount_minor is None:
            return None
        return format_money(self.amount_minor, self.amount_exponent)

    @property
    def value(self) -> str | None:
        """The value of one reward as a decimal string in ``currency``."""
        if self.value_minor is None:
            return None
        return format_money(self.value_minor, self.exponent)

    def to_dict(self) -> dict[str, Any]:
        """The reward table as written in a spec."""
        out: dict[str, Any] = {"provider": self.provider}
        if self.amount is not None:
            out["amount"] = self.amount
        if self.value is not None:
            out["value"] = self.value
        if self.currency is not None:
            out["currency"] = self.currency
        if self.code is not None:
            out["code"] = self.code
        if self.pool is not None:
            out["pool"] = self.pool
        if self.options:
            out["options"] = _plain(self.options)
        if self.fallback is not None:
            out["fallback"] = self.fallback.to_dict()
        return out

    def describe(self) -> str:
        """One line for humans: ``500 points via wallet_points, worth 5.00 EUR``."""
        parts = [self.provider]
        if self.code is not None:
            parts.append(f"code {self.code}")
        if self.pool is not None:
            parts.append(f"pool {self.pool}")
        if self.amount is not None:
            parts.append(f"amount {self.amount}")
        if self.value is not None:
            parts.append(f"worth {self.value} {self.currency or ''}".rstrip())
        text = ", ".join(parts)
        if self.fallback is not None:
            text += f"; fallback: {self.fallback.describe()}"
        return text


@dataclass(frozen=True)
class AudienceRank:
    """Who gets in first when the audience cap is smaller than the segment.

    ``attr`` None means random order; otherwise customers are ordered by that
    attribute, ``descending`` for ``desc``.
    """

    attr: str | None = None
    descending: bool = False

    def __str__(self) -> str:
        if self.attr is None:
            return "random"
        return f"attr:{self.attr} {'desc' if self.descending else 'asc'}"


@dataclass(frozen=True)
class Caps:
    """Hard limits of one campaign; money in minor units of the reward currency."""

    audience: int | None = None
    audience_rank: AudienceRank | None = None
    budget_minor: int | None = None
    daily_budget_minor: int | None = None
    count: int | None = None
    daily_count: int | None = None
    per_customer: int = 1


@dataclass(frozen=True)
class Clearance:
    """Conditional execution: the site's system approves customers before grants."""

    required: bool = False
    lead: float = DEFAULT_CLEARANCE_LEAD  # seconds before execution the webhook is sent
    on_timeout: str = "reject"  # reject | approve: what unanswered customers get


@dataclass(frozen=True)
class Notify:
    """The message sent with each grant (or none if the campaign has no notify table)."""

    channel: str
    consent: str | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    template: str | None = None


@dataclass(frozen=True)
class CampaignSpec:
    """One validated campaign spec (one version of it).

    ``segment`` is the parsed rule tree and ``segment_source`` the table it came
    from (kept for storage and display); ``list_name`` is the custom list of a
    custom_list campaign, ``trigger`` the trigger of a live_action one.
    """

    id: str
    name: str
    kind: str
    timezone: str
    reward: Reward
    description: str | None = None
    schedule: Schedule = field(default_factory=Schedule)
    segment: Segment | None = None
    segment_source: Mapping[str, Any] | None = None
    list_name: str | None = None
    trigger: Trigger | None = None
    caps: Caps = field(default_factory=Caps)
    clearance: Clearance = field(default_factory=Clearance)
    notify: Notify | None = None

    @property
    def currency(self) -> str | None:
        """The campaign's currency (budgets are in it)."""
        return self.reward.currency

    def to_dict(self) -> dict[str, Any]:
        """The normalised spec as plain JSON data; ``parse_spec`` of it gives an equal spec."""
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.description is not None:
            out["description"] = self.description
        out["kind"] = self.kind
        out["timezone"] = self.timezone
        schedule: dict[str, Any] = {
            "start": "now" if self.schedule.start is None else self.schedule.start.isoformat(),
            "delivery": self.schedule.delivery,
        }
        if self.schedule.end is not None:
            schedule["end"] = self.schedule.end.isoformat()
        if self.schedule.recurring is not None:
            schedule["recurring"] = str(self.schedule.recurring)
        if self.schedule.local_time is not None:
            schedule["local_time"] = f"{self.schedule.local_time:%H:%M}"
        out["schedule"] = schedule
        if self.segment_source is not None:
            out["segment"] = _plain(self.segment_source)
        if self.list_name is not None:
            out["list"] = self.list_name
        if self.trigger is not None:
            out["trigger"] = self.trigger.to_dict()
        out["reward"] = self.reward.to_dict()
        caps: dict[str, Any] = {}
        exponent = self.reward.exponent
        if self.caps.audience is not None:
            caps["audience"] = self.caps.audience
        if self.caps.audience_rank is not None:
            caps["audience_rank"] = str(self.caps.audience_rank)
        if self.caps.budget_minor is not None:
            caps["budget"] = format_money(self.caps.budget_minor, exponent)
        if self.caps.daily_budget_minor is not None:
            caps["daily_budget"] = format_money(self.caps.daily_budget_minor, exponent)
        if self.caps.count is not None:
            caps["count"] = self.caps.count
        if self.caps.daily_count is not None:
            caps["daily_count"] = self.caps.daily_count
        caps["per_customer"] = self.caps.per_customer
        out["caps"] = caps
        out["clearance"] = {
            "required": self.clearance.required,
            "lead": format_duration(self.clearance.lead),
            "on_timeout": self.clearance.on_timeout,
        }
        if self.notify is not None:
            notify: dict[str, Any] = {}
            for key in _NOTIFY_KEYS:
                value = getattr(self.notify, key)
                if value is not None:
                    notify[key] = value
            out["notify"] = notify
        return out

    def summary(self) -> dict[str, str]:
        """Short human lines, in display order, for ``promodctl campaign show``."""
        lines: dict[str, str] = {"id": self.id, "name": self.name}
        if self.description:
            lines["description"] = self.description
        lines["kind"] = self.kind
        lines["timezone"] = self.timezone
        lines["schedule"] = _describe_schedule(self.schedule)
        if self.list_name is not None:
            lines["list"] = self.list_name
        if self.trigger is not None:
            lines["trigger"] = self.trigger.describe()
        if self.segment_source is not None:
            lines["segment"] = (
                _compact(self.segment_source) if self.segment_source else "every customer"
            )
        lines["reward"] = self.reward.describe()
        lines["caps"] = _describe_caps(self.caps, self.reward)
        lines["clearance"] = (
            f"required, {format_duration(self.clearance.lead)} ahead, "
            f"unanswered: {self.clearance.on_timeout}"
            if self.clearance.required
            else "not required"
        )
        if self.notify is None:
            lines["notify"] = "no message"
        else:
            content = f"template {self.notify.template}" if self.notify.template else "inline"
            consent = (
                f"consent {self.notify.consent}" if self.notify.consent else "no consent check"
            )
            lines["notify"] = f"via {self.notify.channel}, {consent}, {content}"
        return lines


# --------------------------------------------------------------------------- public helpers


def currency_exponent(currency: str | None) -> int:
    """Decimal places of an ISO 4217 currency: ``EUR`` 2, ``JPY`` 0, ``KWD`` 3; None -> 2."""
    if currency is None:
        return DEFAULT_EXPONENT
    return CURRENCY_EXPONENTS.get(currency, DEFAULT_EXPONENT)


def placeholder_issues(text: str) -> list[str]:
    """Problems with the ``${name}`` placeholders of a notify text ([] when fine).

    Known names are :data:`PLACEHOLDERS`; ``$$`` is a literal ``$``; any other ``$``
    is refused so that a message never goes out with a half-substituted text.
    """
    problems: list[str] = []
    for match in _PLACEHOLDER.finditer(text):
        braced = match.group("braced")
        if match.group("escaped") is not None:
            continue
        if braced is not None:
            if braced not in PLACEHOLDERS:
                known = " ".join(f"${{{name}}}" for name in sorted(PLACEHOLDERS))
                problem = f"unknown placeholder ${{{braced}}} (known: {known})"
                if problem not in problems:
                    problems.append(problem)
            continue
        rest = text[match.end() : match.end() + 1]
        if rest == "{":
            problem = "unclosed '${': write ${name}, or '$$' for a literal '$'"
        else:
            problem = "a lone '$' is not allowed: write ${name}, or '$$' for a literal '$'"
        if problem not in problems:
            problems.append(problem)
    return problems


def render_placeholders(text: str, values: Mapping[str, str]) -> str:
    """Substitute ``${name}`` in a validated notify text; absent values become ``""``."""

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped") is not None:
            return "$"
        name = match.group("braced")
        if name is None or name not in PLACEHOLDERS:
            raise ValueError(f"invalid placeholder at offset {match.start()} of a notify text")
        return str(values.get(name, ""))

    return _PLACEHOLDER.sub(substitute, text)


def load_spec(
    text: str,
    fmt: Literal["toml", "json"],
    *,
    default_timezone: str = "UTC",
    providers: set[str] | None = None,
    channels: set[str] | None = None,
) -> CampaignSpec:
    """Parse TOML or JSON text and validate it with :func:`parse_spec`."""
    data: Any
    if fmt == "toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError([("", f"invalid TOML: {exc}")]) from None
        except RecursionError:
            raise SpecError([("", "invalid TOML: nested too deeply to read")]) from None
    elif fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError([("", f"invalid JSON: {exc}")]) from None
        except RecursionError:
            raise SpecError([("", "invalid JSON: nested too deeply to read")]) from None
        where = find_surrogate(data)
        if where is not None:
            raise SpecError([(where if where != "(value)" else "", SURROGATE_MESSAGE)])
    else:
        raise ValueError(f"unknown spec format {fmt!r} (toml, json)")
    return parse_spec(
        data, default_timezone=default_timezone, providers=providers, channels=channels
    )


def load_spec_file(
    path: Path,
    *,
    default_timezone: str = "UTC",
    providers: set[str] | None = None,
    channels: set[str] | None = None,
) -> CampaignSpec:
    """Read a ``.toml`` or ``.json`` spec file (by extension) and validate it."""
    fmt: Literal["toml", "json"] = "json" if path.suffix.lower() == ".json" else "toml"
    return load_spec(
        path.read_text(encoding="utf-8"),
        fmt,
        default_timezone=default_timezone,
        providers=providers,
        channels=channels,
    )


def parse_spec(
    data: Mapping[str, Any],
    *,
    default_timezone: str = "UTC",
    providers: set[str] | None = None,
    channels: set[str] | None = None,
) -> CampaignSpec:
    """Validate a parsed spec; raise :class:`SpecError` listing every issue.

    ``default_timezone`` applies when the spec has no ``timezone``. ``providers``
    and ``channels``, when given, are the registered reward providers and the
    configured channel names that ``reward.provider`` and ``notify.channel`` must name.
    """
    return _Parser(providers, channels).spec(data, default_timezone)


def spec_warnings(spec: CampaignSpec) -> list[SpecIssue]:
    """Legal but risky choices worth showing at apply (no lifetime cap, no clearance...)."""
    warnings: list[SpecIssue] = []
    caps = spec.caps
    if caps.audience is None and caps.count is None and caps.budget_minor is None:
        warnings.append(
            SpecIssue("caps", "no lifetime cap (audience, count or budget): spend is unbounded")
        )
    if spec.reward.value_minor is not None and caps.budget_minor is None:
        warnings.append(SpecIssue("caps.budget", "the reward has a value but no budget cap"))
    if not spec.clearance.required:
        warnings.append(
            SpecIssue("clearance.required", "grants go out without clearance by the site")
        )
    elif spec.clearance.on_timeout == "approve":
        warnings.append(
            SpecIssue("clearance.on_timeout", "customers the site does not answer are granted")
        )
    if spec.segment_source is not None and not spec.segment_source and spec.list_name is None:
        warnings.append(SpecIssue("segment", "an empty segment targets every customer"))
    if spec.notify is not None and spec.notify.consent is None:
        warnings.append(
            SpecIssue("notify.consent", "messages go to every granted customer, without consent")
        )
    return warnings


# --------------------------------------------------------------------------- parsing


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def _plain(value: Any) -> Any:
    """A deep copy as plain dicts and lists (TOML/JSON-like data only)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _compact(value: Any) -> str:
    return json.dumps(_plain(value), separators=(", ", ": "), ensure_ascii=False)


class _Parser:
    """Walks one spec, collecting issues; results are only trusted if none were found."""

    def __init__(self, providers: set[str] | None, channels: set[str] | None) -> None:
        self.providers = providers
        self.channels = channels
        self.issues: list[SpecIssue] = []

    def issue(self, path: str, message: str) -> None:
        if SpecIssue(path, message) not in self.issues:
            self.issues.append(SpecIssue(path, message))

    def has_issue(self, path: str) -> bool:
        return any(issue.path == path for issue in self.issues)

    # ---- generic value checks

    def table(
        self, data: Mapping[str, Any], key: str, path: str, allowed: Iterable[str]
    ) -> dict[str, Any] | None:
        """data[key] as a table with only ``allowed`` keys (None when absent or wrong)."""
        if key not in data:
            return None
        return self.check_table(data[key], _join(path, key), allowed)

    def check_table(
        self, value: Any, path: str, allowed: Iterable[str] | None
    ) -> dict[str, Any] | None:
        """value as a table; with ``allowed``, other keys are issues."""
        if not isinstance(value, Mapping):
            self.issue(path, f"must be a table, not {_type_name(value)}")
            return None
        if allowed is not None:
            allowed_keys = tuple(allowed)
            for key in value:
                if key not in allowed_keys:
                    self.issue(_join(path, str(key)), "unknown key")
        return dict(value)

    def string(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        pattern: re.Pattern[str] | None = None,
        hint: str = "",
    ) -> str | None:
        here = _join(path, key)
        if key not in data:
            if required:
                self.issue(here, "required")
            return None
        value = data[key]
        if not isinstance(value, str):
            self.issue(here, f"must be a string, not {_type_name(value)}")
            return None
        if not value.strip():
            self.issue(here, "must not be empty")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.issue(here, f"invalid value {value!r}{': ' + hint if hint else ''}")
            return None
        return value

    def choice(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        choices: tuple[str, ...],
        *,
        required: bool = False,
    ) -> str | None:
        value = self.string(data, key, path, required=required)
        if value is not None and value not in choices:
            self.issue(_join(path, key), f"must be one of {' | '.join(choices)}, not {value!r}")
            return None
        return value

    def integer(
        self, data: Mapping[str, Any], key: str, path: str, *, minimum: int = 1
    ) -> int | None:
        if key not in data:
            return None
        value = data[key]
        here = _join(path, key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.issue(here, f"must be an integer, not {_type_name(value)}")
            return None
        if value < minimum:
            self.issue(here, f"must be at least {minimum}, not {value}")
            return None
        return value

    def boolean(self, data: Mapping[str, Any], key: str, path: str) -> bool | None:
        if key not in data:
            return None
        value = data[key]
        if not isinstance(value, bool):
            self.issue(_join(path, key), f"must be true or false, not {_type_name(value)}")
            return None
        return value

    def duration(self, data: Mapping[str, Any], key: str, path: str) -> float | None:
        if key not in data:
            return None
        value = data[key]
        here = _join(path, key)
        if not isinstance(value, str):
            self.issue(here, f"must be a duration string such as '30m', not {_type_name(value)}")
            return None
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.issue(here, str(exc))
            return None
        if seconds <= 0:
            self.issue(here, "must be longer than 0s")
            return None
        return seconds

    def money(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        exponent: int,
        currency: str | None,
        *,
        positive: bool = True,
    ) -> int | None:
        """A decimal money string in minor units of ``exponent`` decimals."""
        if key not in data:
            return None
        minor_exponent = self.decimal(data, key, path, exponent, currency)
        if minor_exponent is None:
            return None
        minor, _ = minor_exponent
        if positive and minor == 0:
            self.issue(_join(path, key), "must be more than zero")
            return None
        return minor

    def decimal(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        exponent: int | None,
        currency: str | None,
    ) -> tuple[int, int] | None:
        """(minor, exponent) of a decimal string; exponent None: 0 unless it has decimals."""
        value = data[key]
        here = _join(path, key)
        if isinstance(value, float):
            self.issue(
                here,
                f'must be a decimal string such as "5.00", not the float {value!r}: '
                "floats cannot hold money exactly",
            )
            return None
        if isinstance(value, bool) or not isinstance(value, str):
            example = f'"{value}"' if isinstance(value, int) and value >= 0 else '"5.00"'
            self.issue(here, f"must be a decimal string such as {example}, not {_type_name(value)}")
            return None
        match = _MONEY.fullmatch(value)
        if match is None:
            self.issue(here, f'invalid amount {value!r}: use a plain decimal string such as "5.00"')
            return None
        whole, fraction = match.group(1), match.group(2)
        if exponent is None:
            exponent = 0 if fraction is None else currency_exponent(currency)
        fraction = fraction or ""
        if len(fraction) > exponent:
            if exponent == 0:
                detail = f"{currency} has no minor unit" if currency else "no decimals allowed"
            else:
                unit = f"{currency} has" if currency else "at most"
                detail = f"{unit} {exponent} decimal{'s' if exponent > 1 else ''}"
            self.issue(here, f"invalid amount {value!r}: {detail}")
            return None
        return int(whole + fraction.ljust(exponent, "0")), exponent

    def local_time(self, data: Mapping[str, Any], key: str, path: str) -> time | None:
        if key not in data:
            return None
        value = data[key]
        here = _join(path, key)
        if isinstance(value, time) and not isinstance(value, datetime):
            if value.second or value.microsecond or value.tzinfo is not None:
                self.issue(here, "must be a local time HH:MM without seconds or offset")
                return None
            return value
        if not isinstance(value, str):
            self.issue(here, f'must be a time "HH:MM", not {_type_name(value)}')
            return None
        return self.hhmm(value, here)

    def hhmm(self, value: str, path: str) -> time | None:
        match = _HHMM.fullmatch(value)
        if match is None:
            self.issue(path, f'invalid time {value!r}: use 24-hour "HH:MM" such as "10:00"')
            return None
        return time(int(match.group(1)), int(match.group(2)))

    def instant(self, data: Mapping[str, Any], key: str, path: str) -> datetime | None:
        value = data[key]
        here = _join(path, key)
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                self.issue(
                    here,
                    f"invalid time {value!r}: use ISO-8601 with an offset, "
                    'such as "2026-12-01T10:00:00+01:00"',
                )
                return None
        else:
            self.issue(here, f"must be an ISO-8601 time string, not {_type_name(value)}")
            return None
        if moment.tzinfo is None or moment.utcoffset() is None:
            self.issue(here, f"{value!s} has no UTC offset: add one, such as +01:00 or Z")
            return None
        return moment

    def timezone(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            self.issue(path, f"must be an IANA time zone name, not {_type_name(value)}")
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            self.issue(
                path, f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
            )
            return None
        return value

    # ---- sections

    def spec(self, data: Any, default_timezone: str) -> CampaignSpec:
        if not isinstance(data, Mapping):
            raise SpecError([("", f"a campaign spec must be a table, not {_type_name(data)}")])
        for key in data:
            if key not in _TOP_KEYS:
                self.issue(str(key), "unknown key")
        spec_id = self.string(
            data,
            "id",
            "",
            required=True,
            pattern=_SLUG,
            hint="lower-case letters, digits, '-' and '_', starting with a letter or digit, "
            "at most 64 characters",
        )
        name = self.string(data, "name", "", required=True)
        description = None
        if "description" in data:
            description = data["description"]
            if not isinstance(description, str):
                self.issue("description", f"must be a string, not {_type_name(description)}")
                description = None
        kind = self.choice(data, "kind", "", KINDS, required=True)
        timezone = self.timezone(data.get("timezone", default_timezone), "timezone")
        schedule = self.schedule(data, kind)
        segment_data, trigger_data = self.split_trigger(data, kind)
        segment_source, segment = self.segment(segment_data, kind)
        list_name = self.list_name(data, kind)
        trigger = self.trigger(trigger_data, kind)
        reward = self.reward(data.get("reward"), "reward", top=True)
        caps = self.caps(data, reward)
        clearance = self.clearance(data)
        notify = self.notify(data, reward)
        if self.issues:
            raise SpecError(self.issues)
        assert spec_id is not None and name is not None and kind is not None
        assert timezone is not None and reward is not None
        return CampaignSpec(
            id=spec_id,
            name=name,
            kind=kind,
            timezone=timezone,
            reward=reward,
            description=description,
            schedule=schedule,
            segment=segment,
            segment_source=segment_source,
            list_name=list_name,
            trigger=trigger,
            caps=caps,
            clearance=clearance,
            notify=notify,
        )

    def schedule(self, data: Mapping[str, Any], kind: str | None) -> Schedule:
        table = self.table(data, "schedule", "", _SCHEDULE_KEYS) or {}
        path = "schedule"
        start: datetime | None = None
        if "start" in table and table["start"] != "now":
            start = self.instant(table, "start", path)
        end = self.instant(table, "end", path) if "end" in table else None
        if start is not None and end is not None and end <= start:
            self.issue("schedule.end", "must be after schedule.start")
        recurring: Recurrence | None = None
        if "recurring" in table:
            value = table["recurring"]
            match = _RECURRING.fullmatch(value) if isinstance(value, str) else None
            if match is None:
                self.issue("schedule.recurring", f'must be "daily HH:MM", not {value!r}')
            else:
                at = self.hhmm(match.group(1), "schedule.recurring")
                if at is not None:
                    recurring = Recurrence("daily", at)
            if kind == "live_action":
                self.issue(
                    "schedule.recurring", "live_action campaigns run continuously; remove recurring"
                )
        delivery = self.choice(table, "delivery", path, DELIVERIES) or "immediate"
        local = self.local_time(table, "local_time", path)
        if delivery == "local_time" and local is None and "local_time" not in table:
            self.issue("schedule.local_time", 'required for delivery = "local_time"')
        elif delivery == "best_time" and local is None:
            local = DEFAULT_BEST_TIME_FALLBACK
        elif delivery == "immediate" and "local_time" in table:
            self.issue(
                "schedule.local_time", 'only used with delivery = "local_time" or "best_time"'
            )
        return Schedule(start, end, recurring, delivery, local)

    def split_trigger(
        self, data: Mapping[str, Any], kind: str | None
    ) -> tuple[Any, tuple[Any, str] | None]:
        """The segment table and the trigger (with its path), accepting ``segment.trigger``."""
        segment = data.get("segment")
        trigger: tuple[Any, str] | None = None
        if "trigger" in data:
            trigger = (data["trigger"], "trigger")
        if kind == "live_action" and isinstance(segment, Mapping) and "trigger" in segment:
            if trigger is not None:
                self.issue("segment.trigger", "trigger is given twice (also at the top level)")
            else:
                trigger = (segment["trigger"], "segment.trigger")
            segment = {key: value for key, value in segment.items() if key != "trigger"}
        return segment, trigger

    def segment(self, segment: Any, kind: str | None) -> tuple[dict[str, Any] | None, Any]:
        if segment is None:
            if kind == "past_behavior":
                self.issue(
                    "segment",
                    "required for kind past_behavior (an empty [segment] table targets "
                    "every customer)",
                )
            return None, None
        if not isinstance(segment, Mapping):
            self.issue("segment", f"must be a table, not {_type_name(segment)}")
            return None, None
        try:
            parsed = parse_segment(segment, "segment")
        except SegmentError as exc:
            for issue in exc.issues:
                path, message = _issue_parts(issue)
                self.issue(path, message)
            return None, None
        return _plain(segment), parsed

    def list_name(self, data: Mapping[str, Any], kind: str | None) -> str | None:
        if kind == "custom_list":
            return self.string(data, "list", "", required=True)
        if "list" in data and kind is not None:
            self.issue(
                "list",
                f"only for kind custom_list; in a {kind} campaign use a "
                '{ list = "name" } rule in the segment',
            )
        return None

    def trigger(self, found: tuple[Any, str] | None, kind: str | None) -> Trigger | None:
        if kind != "live_action":
            if found is not None and kind is not None:
                self.issue(found[1], "only for kind live_action")
            return None
        if found is None:
            self.issue(
                "trigger",
                'required for kind live_action, e.g. { event = "cart_abandoned" } or '
                '{ after = "signup", missing = "first_deposit", within = "72h" }',
            )
            return None
        value, path = found
        table = self.check_table(value, path, (*_EVENT_TRIGGER_KEYS, *_INACTION_KEYS))
        if table is None:
            return None
        if "event" in table:
            for key in ("after", "missing"):
                if key in table:
                    self.issue(_join(path, key), "use either event = ... or after/missing")
            rule_table = {key: item for key, item in table.items() if key in _EVENT_TRIGGER_KEYS}
            try:
                rule = parse_segment(rule_table, path).rule
            except SegmentError as exc:
                for issue in exc.issues:
                    self.issue(*_issue_parts(issue))
                return None
            assert isinstance(rule, EventRule)
            return Trigger(rule=rule)
        if "after" in table or "missing" in table:
            for key in _EVENT_TRIGGER_KEYS:
                if key in table and key not in _INACTION_KEYS:
                    self.issue(_join(path, key), "only with event = ...")
            after = self.string(table, "after", path, required=True)
            missing = self.string(table, "missing", path, required=True)
            within = self.duration(table, "within", path)
            if "within" not in table:
                self.issue(_join(path, "within"), "required with after/missing")
            return Trigger(after=after, missing=missing, within=within)
        self.issue(path, "needs event = ..., or after = ... with missing = ... and within")
        return None

    def reward(
        self, value: Any, path: str, *, top: bool, inherit_currency: str | None = None
    ) -> Reward | None:
        if value is None:
            if top:
                self.issue(path, "required")
            return None
        allowed = _REWARD_KEYS if top else tuple(k for k in _REWARD_KEYS if k != "fallback")
        if not top and isinstance(value, Mapping) and "fallback" in value:
            self.issue(_join(path, "fallback"), "a fallback cannot have its own fallback")
            value = {key: item for key, item in value.items() if key != "fallback"}
        table = self.check_table(value, path, allowed)
        if table is None:
            return None
        provider = self.string(table, "provider", path, required=True, pattern=_NAME)
        if provider is not None and self.providers is not None and provider not in self.providers:
            known = ", ".join(sorted(self.providers)) or "none"
            self.issue(_join(path, "provider"), f"unknown provider {provider!r} (known: {known})")
        currency = self.string(
            table, "currency", path, pattern=_CURRENCY, hint="an ISO 4217 code such as EUR"
        )
        if not top:
            if (
                currency is not None
                and inherit_currency is not None
                and currency != inherit_currency
            ):
                self.issue(
                    _join(path, "currency"),
                    f"must be the reward's currency {inherit_currency} (caps are in one currency)",
                )
            elif currency is None and "currency" not in table:
                currency = inherit_currency
        amount: tuple[int, int] | None = None
        if "amount" in table:
            amount = self.decimal(table, "amount", path, None, currency)
            if amount is not None and amount[0] == 0:
                self.issue(_join(path, "amount"), "must be more than zero")
        value_minor = self.money(
            table, "value", path, currency_exponent(currency), currency, positive=False
        )
        code = self.string(table, "code", path)
        pool = self.string(table, "pool", path, pattern=_NAME, hint="a code pool name")
        options: dict[str, Any] = {}
        if "options" in table:
            opts = self.check_table(table["options"], _join(path, "options"), None)
            options = _plain(opts) if opts is not None else {}
        if provider in BUILTIN_PROVIDERS:
            self.builtin_reward(table, path, provider)
        fallback = None
        if top and "fallback" in table:
            fallback = self.reward(
                table["fallback"], _join(path, "fallback"), top=False, inherit_currency=currency
            )
        parent_has_currency = not top and inherit_currency is not None
        if "value" in table and "currency" not in table and not parent_has_currency:
            where = "reward.currency" if not top else _join(path, "currency")
            if not self.has_issue("reward.currency"):
                self.issue(where, "required when a value is given")
        if provider is None:
            return None
        return Reward(
            provider=provider,
            amount_minor=None if amount is None else amount[0],
            amount_exponent=0 if amount is None else amount[1],
            value_minor=value_minor,
            currency=currency,
            code=code,
            pool=pool,
            options=options,
            fallback=fallback,
        )

    def builtin_reward(self, table: Mapping[str, Any], path: str, provider: str) -> None:
        needs = {"coupon": "code", "code_pool": "pool", "wallet_points": "amount"}[provider]
        if needs not in table:
            self.issue(_join(path, needs), f"required for provider {provider}")
        for key in ("code", "pool"):
            if key in table and key != needs:
                self.issue(_join(path, key), f"not used by provider {provider}")
        if "options" in table:
            self.issue(_join(path, "options"), f"built-in provider {provider} takes no options")

    def caps(self, data: Mapping[str, Any], reward: Reward | None) -> Caps:
        table = self.table(data, "caps", "", _CAPS_KEYS) or {}
        path = "caps"
        currency = reward.currency if reward is not None else None
        exponent = currency_exponent(currency)
        audience = self.integer(table, "audience", path)
        rank: AudienceRank | None = None
        if "audience_rank" in table:
            text = self.string(table, "audience_rank", path)
            if text is not None:
                match = _RANK.fullmatch(text)
                if text == "random":
                    rank = AudienceRank()
                elif match is not None:
                    rank = AudienceRank(match.group(1), match.group(2) == "desc")
                else:
                    self.issue(
                        "caps.audience_rank",
                        f'must be "random" or "attr:NAME asc|desc", not {text!r}',
                    )
            if "audience" not in table:
                self.issue("caps.audience_rank", "only used together with caps.audience")
        elif audience is not None:
            rank = AudienceRank()
        budget = self.money(table, "budget", path, exponent, currency)
        daily_budget = self.money(table, "daily_budget", path, exponent, currency)
        count = self.integer(table, "count", path)
        daily_count = self.integer(table, "daily_count", path)
        per_customer = self.integer(table, "per_customer", path)
        if reward is not None and ("budget" in table or "daily_budget" in table):
            self.budget_needs_value(reward, "reward", table)
            costs = [("reward.value", reward.value_minor)]
            if reward.fallback is not None:
                costs.append(("reward.fallback.value", reward.fallback.value_minor))
            for key, cap in (("budget", budget), ("daily_budget", daily_budget)):
                for name, cost in costs:
                    if cap is not None and cost is not None and cap < cost:
                        self.issue(
                            f"caps.{key}",
                            f"{format_money(cap, exponent)} is less than {name} "
                            f"{format_money(cost, exponent)}: no such reward could ever be granted",
                        )
        return Caps(
            audience=audience,
            audience_rank=rank,
            budget_minor=budget,
            daily_budget_minor=daily_budget,
            count=count,
            daily_count=daily_count,
            per_customer=1 if per_customer is None else per_customer,
        )

    def budget_needs_value(self, reward: Reward, path: str, caps: Mapping[str, Any]) -> None:
        keys = " and ".join(f"caps.{key}" for key in ("budget", "daily_budget") if key in caps)
        if reward.value_minor is None and not self.has_issue(_join(path, "value")):
            self.issue(_join(path, "value"), f"required with {keys} (what one reward costs)")
        if reward.currency is None and path == "reward" and not self.has_issue("reward.currency"):
            self.issue("reward.currency", f"required with {keys}")
        if reward.fallback is not None:
            self.budget_needs_value(reward.fallback, _join(path, "fallback"), caps)

    def clearance(self, data: Mapping[str, Any]) -> Clearance:
        table = self.table(data, "clearance", "", _CLEARANCE_KEYS) or {}
        required = self.boolean(table, "required", "clearance")
        lead = self.duration(table, "lead", "clearance")
        on_timeout = self.choice(table, "on_timeout", "clearance", ON_TIMEOUT)
        return Clearance(
            required=bool(required),
            lead=DEFAULT_CLEARANCE_LEAD if lead is None else lead,
            on_timeout=on_timeout or "reject",
        )

    def notify(self, data: Mapping[str, Any], reward: Reward | None) -> Notify | None:
        table = self.table(data, "notify", "", _NOTIFY_KEYS)
        if table is None:
            return None
        path = "notify"
        channel = self.string(table, "channel", path, required=True)
        if channel is not None and self.channels is not None and channel not in self.channels:
            known = ", ".join(sorted(self.channels)) or "none"
            self.issue("notify.channel", f"unknown channel {channel!r} (configured: {known})")
        consent = self.string(table, "consent", path)
        texts: dict[str, str | None] = {}
        for key in ("subject", "text", "html"):
            texts[key] = self.string(table, key, path)
            if texts[key] is not None:
                for problem in placeholder_issues(texts[key] or ""):
                    self.issue(_join(path, key), problem)
                if "${reward_code}" in (texts[key] or "") and not _may_have_code(reward):
                    self.issue(
                        _join(path, key),
                        "${reward_code} is never set: the reward gives no code",
                    )
        template = self.string(
            table, "template", path, pattern=_TEMPLATE, hint="a template name such as 'winback'"
        )
        if "template" in table:
            for key in ("text", "html"):
                if key in table:
                    self.issue(_join(path, key), "use either template or text/html, not both")
        elif "text" not in table and "html" not in table:
            self.issue(path, "needs text, html or template")
        if channel is None:
            return None
        return Notify(
            channel=channel,
            consent=consent,
            subject=texts["subject"],
            text=texts["text"],
            html=texts["html"],
            template=template,
        )


def _may_have_code(reward: Reward | None) -> bool:
    while reward is not None:
        if reward.provider != "wallet_points":
            return True
        reward = reward.fallback
    return False


def _issue_parts(issue: Any) -> tuple[str, str]:
    if isinstance(issue, tuple) and len(issue) == 2:
        return str(issue[0]), str(issue[1])
    return str(getattr(issue, "path", "segment")), str(getattr(issue, "message", issue))


def _describe_schedule(schedule: Schedule) -> str:
    start = "now" if schedule.start is None else schedule.start.isoformat()
    text = f"from {start}"
    if schedule.end is not None:
        text += f" until {schedule.end.isoformat()}"
    if schedule.recurring is not None:
        text += f", {schedule.recurring}"
    text += f", delivery {schedule.delivery}"
    if schedule.local_time is not None:
        label = "at" if schedule.delivery == "local_time" else "fallback"
        text += f" ({label} {schedule.local_time:%H:%M} local)"
    return text


def _describe_caps(caps: Caps, reward: Reward) -> str:
    exponent = reward.exponent
    currency = f" {reward.currency}" if reward.currency else ""
    parts: list[str] = []
    if caps.audience is not None:
        parts.append(f"audience {caps.audience} ({caps.audience_rank or 'random'})")
    if caps.budget_minor is not None:
        parts.append(f"budget {format_money(caps.budget_minor, exponent)}{currency}")
    if caps.daily_budget_minor is not None:
        parts.append(f"daily budget {format_money(caps.daily_budget_minor, exponent)}{currency}")
    if caps.count is not None:
        parts.append(f"count {caps.count}")
    if caps.daily_count is not None:
        parts.append(f"daily count {caps.daily_count}")
    parts.append(f"{caps.per_customer} per customer")
    return ", ".join(parts)
