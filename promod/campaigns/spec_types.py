"""The campaign spec's frozen types: what a validated spec is, and its small helpers.

:mod:`promod.campaigns.spec` parses and validates spec text into these (through the
models of :mod:`promod.campaigns.spec_models`, which build them); everything here
is also importable from there::

    from promod.campaigns.spec import CampaignSpec, SpecError, currency_exponent
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any, Literal, NamedTuple

from promod.campaigns.segments import EventRule, Segment
from promod.units import format_duration, format_money

KINDS = ("past_behavior", "live_action", "custom_list", "notification")
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

_PLACEHOLDER = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^{}$]*)\}|(?P<stray>))")


_NOTIFY_KEYS = ("channel", "consent", "subject", "text", "html", "template")

#: What a notification campaign's spec holds in place of a reward: it grants nothing.
NO_REWARD_PROVIDER = "none"


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
            out["options"] = plain(self.options)
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
class Step:
    """A step of a notification campaign: ``done`` is a segment rule; not matching, it is
    one of the customer's ``missing_steps``."""

    id: str
    text: str
    done: Segment
    done_source: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "done": plain(self.done_source)}


@dataclass(frozen=True)
class Notify:
    """The message sent with each grant (or none if the campaign has no notify table).

    A notification campaign's texts are Jinja2 templates (promod.notify.render);
    ``not_within`` (seconds) keeps it from mailing one customer twice within that
    time, and ``steps`` are what its messages list as done or missing.
    """

    channel: str
    consent: str | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    template: str | None = None
    not_within: float | None = None
    steps: tuple[Step, ...] = ()


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
            out["segment"] = plain(self.segment_source)
        if self.list_name is not None:
            out["list"] = self.list_name
        if self.trigger is not None:
            out["trigger"] = self.trigger.to_dict()
        if self.kind != "notification":
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
            if self.notify.not_within is not None:
                notify["not_within"] = format_duration(self.notify.not_within)
            if self.notify.steps:
                notify["steps"] = [step.to_dict() for step in self.notify.steps]
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
        lines["reward"] = (
            "none (a notification campaign)"
            if self.kind == "notification"
            else self.reward.describe()
        )
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
            if self.notify.not_within is not None:
                lines["notify"] += f", not within {format_duration(self.notify.not_within)}"
            if self.notify.steps:
                lines["notify"] += ", steps " + ", ".join(s.id for s in self.notify.steps)
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


def plain(value: Any) -> Any:
    """A deep copy as plain dicts and lists (TOML/JSON-like data only)."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def _compact(value: Any) -> str:
    return json.dumps(plain(value), separators=(", ", ": "), ensure_ascii=False)


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
