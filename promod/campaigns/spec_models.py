"""The campaign spec schema: one pydantic model per table of a spec, as an operator writes it.

:class:`SpecModel` validates a parsed TOML or JSON spec in one pass and collects
every issue with its key path; ``SpecModel.to_spec()`` builds the frozen
:class:`promod.campaigns.spec.CampaignSpec`. The validation context carries what
a spec is checked against: ``default_timezone``, the reward ``providers``
(name -> provider object, whose ``options_model`` checks the reward's own keys)
and the configured ``channels``::

    model = SpecModel.model_validate(data, context={"default_timezone": "UTC"})
    spec = model.to_spec()

Money stays exact: ``amount``, ``value`` and the budget caps must be decimal
strings (a float or integer is refused) and become integers of minor units of
the reward's currency.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, time
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, model_validator

from promod.campaigns import spec_types as domain
from promod.campaigns.segments import EVENT_OPTIONS, EventRule, SegmentError, parse_segment
from promod.campaigns.spec_values import NAME, Text
from promod.campaigns.spec_values import pattern as _pattern
from promod.campaigns.spec_values import text as _text
from promod.schema import (
    SPEC_WORDS,
    Check,
    Invalid,
    Model,
    PositiveInt,
    Problems,
    StrictBool,
    choice,
    issues_of,
)
from promod.units import format_money, parse_duration

__all__ = ["SpecModel"]

_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_NAME = NAME
_TEMPLATE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_RECURRING = re.compile(r"daily\s+(\S+)")
_MONEY = re.compile(r"(\d+)(?:\.(\d+))?")
_RANK = re.compile(r"attr:([^\s]+)\s+(asc|desc)")
_EVENT_TRIGGER_KEYS = ("event", *EVENT_OPTIONS)
_INACTION_KEYS = ("after", "missing", "within")
_BUILTIN_NEEDS = {"coupon": "code", "code_pool": "pool", "wallet_points": "amount"}

Found = Problems


def _a(value: object) -> str:
    return SPEC_WORDS.kind(value)


# --------------------------------------------------------------------------- value checks


Slug = Annotated[
    str,
    _pattern(
        _SLUG,
        "lower-case letters, digits, '-' and '_', starting with a letter or digit, "
        "at most 64 characters",
    ),
]
ProviderName = Annotated[str, _pattern(_NAME)]
Currency = Annotated[str, _pattern(_CURRENCY, "an ISO 4217 code such as EUR")]
TemplateName = Annotated[str, _pattern(_TEMPLATE, "a template name such as 'winback'")]


def _timezone(value: Any) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(value, str):
        raise Invalid(f"must be an IANA time zone name, not {_a(value)}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(
            f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
        ) from None
    return value


def _duration(value: Any) -> float:
    if not isinstance(value, str):
        raise Invalid(f"must be a duration string such as '30m', not {_a(value)}")
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if seconds <= 0:
        raise Invalid("must be longer than 0s")
    return seconds


def _hhmm(value: str) -> time:
    match = _HHMM.fullmatch(value)
    if match is None:
        raise Invalid(f'invalid time {value!r}: use 24-hour "HH:MM" such as "10:00"')
    return time(int(match.group(1)), int(match.group(2)))


def _local_time(value: Any) -> time:
    if isinstance(value, time):
        if value.second or value.microsecond or value.tzinfo is not None:
            raise Invalid("must be a local time HH:MM without seconds or offset")
        return value
    if not isinstance(value, str):
        raise Invalid(f'must be a time "HH:MM", not {_a(value)}')
    return _hhmm(value)


def _instant(value: Any) -> datetime | None:
    if value == "now":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise Invalid(
                f"invalid time {value!r}: use ISO-8601 with an offset, "
                'such as "2026-12-01T10:00:00+01:00"'
            ) from None
    else:
        raise Invalid(f"must be an ISO-8601 time string, not {_a(value)}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise Invalid(f"{value!s} has no UTC offset: add one, such as +01:00 or Z")
    return moment


def _recurring(value: Any) -> domain.Recurrence:
    match = _RECURRING.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise Invalid(f'must be "daily HH:MM", not {value!r}')
    return domain.Recurrence("daily", _hhmm(match.group(1)))


def _rank(value: Any) -> domain.AudienceRank:
    text = _text(value)
    if text == "random":
        return domain.AudienceRank()
    match = _RANK.fullmatch(text)
    if match is None:
        raise Invalid(f'must be "random" or "attr:NAME asc|desc", not {text!r}')
    return domain.AudienceRank(match.group(1), match.group(2) == "desc")


def decimal_minor(value: Any, exponent: int | None, currency: str | None) -> tuple[int, int]:
    """(minor units, exponent) of a decimal string; exponent None: 0 unless it has decimals."""
    if isinstance(value, float):
        raise Invalid(
            f'must be a decimal string such as "5.00", not the float {value!r}: '
            "floats cannot hold money exactly"
        )
    if isinstance(value, bool) or not isinstance(value, str):
        example = f'"{value}"' if isinstance(value, int) and value >= 0 else '"5.00"'
        raise Invalid(f"must be a decimal string such as {example}, not {_a(value)}")
    match = _MONEY.fullmatch(value)
    if match is None:
        raise Invalid(f'invalid amount {value!r}: use a plain decimal string such as "5.00"')
    whole, fraction = match.group(1), match.group(2)
    if exponent is None:
        exponent = 0 if fraction is None else domain.currency_exponent(currency)
    fraction = fraction or ""
    if len(fraction) > exponent:
        if exponent == 0:
            detail = f"{currency} has no minor unit" if currency else "no decimals allowed"
        else:
            unit = f"{currency} has" if currency else "at most"
            detail = f"{unit} {exponent} decimal{'s' if exponent > 1 else ''}"
        raise Invalid(f"invalid amount {value!r}: {detail}")
    return int(whole + fraction.ljust(exponent, "0")), exponent


def _currency_of(info: ValidationInfo) -> str | None:
    """The reward's own currency if validated, else the one the spec's reward names."""
    own = info.data.get("currency")
    if isinstance(own, str):
        return own
    inherited = (info.context or {}).get("currency")
    return inherited if isinstance(inherited, str) else None


def _amount(value: Any, info: ValidationInfo) -> tuple[int, int]:
    minor, exponent = decimal_minor(value, None, _currency_of(info))
    if minor == 0:
        raise Invalid("must be more than zero")
    return minor, exponent


def _value(value: Any, info: ValidationInfo) -> int:
    currency = _currency_of(info)
    return decimal_minor(value, domain.currency_exponent(currency), currency)[0]


def _budget(value: Any, info: ValidationInfo) -> int:
    currency = (info.context or {}).get("currency")
    minor, _ = decimal_minor(value, domain.currency_exponent(currency), currency)
    if minor == 0:
        raise Invalid("must be more than zero")
    return minor


_MONEY_SCHEMA = {"type": "string", "pattern": r"^\d+(\.\d+)?$", "examples": ["5.00"]}


# --------------------------------------------------------------------------- tables


class ScheduleModel(Model):
    """``[schedule]``: when the campaign runs and how grants reach each customer."""

    start: Annotated[
        datetime | None, Check(_instant, {"type": "string", "format": "date-time"})
    ] = None
    end: Annotated[datetime | None, Check(_instant, {"type": "string", "format": "date-time"})] = (
        None
    )
    recurring: Annotated[domain.Recurrence, Check(_recurring, {"type": "string"})] | None = None
    delivery: Annotated[str, choice(*domain.DELIVERIES)] = "immediate"
    local_time: (
        Annotated[time, Check(_local_time, {"type": "string", "pattern": "^\\d\\d:\\d\\d$"})] | None
    ) = None

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: ScheduleModel | None, info: ValidationInfo
    ) -> Found:
        found: Found = []
        if value is not None and value.start and value.end and value.end <= value.start:
            found.append((("end",), "must be after schedule.start"))
        if "recurring" in raw and (info.context or {}).get("kind") == "live_action":
            found.append(
                (("recurring",), "live_action campaigns run continuously; remove recurring")
            )
        delivery = raw.get("delivery", "immediate")
        if delivery == "local_time" and "local_time" not in raw:
            found.append((("local_time",), 'required for delivery = "local_time"'))
        elif delivery == "immediate" and "local_time" in raw:
            found.append((("local_time",), 'only used with delivery = "local_time" or "best_time"'))
        return found

    def to_schedule(self) -> domain.Schedule:
        local = self.local_time
        if self.delivery == "best_time" and local is None:
            local = domain.DEFAULT_BEST_TIME_FALLBACK
        return domain.Schedule(self.start, self.end, self.recurring, self.delivery, local)


class FallbackModel(Model):
    """``reward.fallback``: what is granted instead when the provider runs out."""

    provider: ProviderName
    currency: Currency | None = None
    amount: Annotated[tuple[int, int], Check(_amount, _MONEY_SCHEMA, with_info=True)] | None = None
    value: Annotated[int, Check(_value, _MONEY_SCHEMA, with_info=True)] | None = None
    code: Any = None
    pool: Any = None
    options: Any = None

    def to_reward(self, inherit_currency: str | None = None) -> domain.Reward:
        currency = self.currency if self.currency is not None else inherit_currency
        return domain.Reward(
            provider=self.provider,
            amount_minor=None if self.amount is None else self.amount[0],
            amount_exponent=0 if self.amount is None else self.amount[1],
            value_minor=self.value,
            currency=currency,
            code=self.code,
            pool=self.pool,
            options=dict(self.options) if isinstance(self.options, Mapping) else {},
        )


class RewardModel(FallbackModel):
    """``[reward]``: the provider, amount, value and currency, and the provider's own keys."""

    fallback: FallbackModel | None = None

    def to_reward(self, inherit_currency: str | None = None) -> domain.Reward:
        base = super().to_reward()
        fallback = None if self.fallback is None else self.fallback.to_reward(self.currency)
        return domain.Reward(**{**vars(base), "fallback": fallback})


class CapsModel(Model):
    """``[caps]``: hard limits; budgets in the reward's currency."""

    audience: PositiveInt | None = None
    audience_rank: Annotated[domain.AudienceRank, Check(_rank, {"type": "string"})] | None = None
    budget: Annotated[int, Check(_budget, _MONEY_SCHEMA, with_info=True)] | None = None
    daily_budget: Annotated[int, Check(_budget, _MONEY_SCHEMA, with_info=True)] | None = None
    count: PositiveInt | None = None
    daily_count: PositiveInt | None = None
    per_customer: PositiveInt = 1

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: CapsModel | None, info: ValidationInfo
    ) -> Found:
        if "audience_rank" in raw and "audience" not in raw:
            return [(("audience_rank",), "only used together with caps.audience")]
        return []

    def to_caps(self) -> domain.Caps:
        rank = self.audience_rank
        if rank is None and self.audience is not None:
            rank = domain.AudienceRank()
        return domain.Caps(
            audience=self.audience,
            audience_rank=rank,
            budget_minor=self.budget,
            daily_budget_minor=self.daily_budget,
            count=self.count,
            daily_count=self.daily_count,
            per_customer=self.per_customer,
        )


class ClearanceModel(Model):
    """``[clearance]``: the site's system approves customers before grants."""

    required: StrictBool = False
    lead: Annotated[float, Check(_duration, {"type": "string", "examples": ["30m"]})] = (
        domain.DEFAULT_CLEARANCE_LEAD
    )
    on_timeout: Annotated[str, choice(*domain.ON_TIMEOUT)] = "reject"


class StepModel(Model):
    """``[[notify.steps]]`` of a notification campaign: a step and the rule that says it is done."""

    id: Slug
    text: Text
    done: Any

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: StepModel | None, info: ValidationInfo
    ) -> Found:
        done = raw.get("done")
        if done is None:
            return []
        if not isinstance(done, Mapping):
            return [(("done",), f"must be a segment rule table, not {_a(done)}")]
        try:
            parse_segment(done, "done")
        except SegmentError as exc:
            return _segment_issues(exc)
        return []

    def to_step(self) -> domain.Step:
        return domain.Step(self.id, self.text, parse_segment(self.done, "done"), self.done)


class NotifyModel(Model):
    """``[notify]``: the message sent with each grant, or a notification campaign's message."""

    channel: Text
    consent: Text | None = None
    subject: Text | None = None
    text: Text | None = None
    html: Text | None = None
    template: TemplateName | None = None
    not_within: (
        Annotated[float, Check(_duration, {"type": "string", "examples": ["14d"]})] | None
    ) = None
    steps: list[StepModel] | None = None

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: NotifyModel | None, info: ValidationInfo
    ) -> Found:
        found: Found = []
        channels = (info.context or {}).get("channels")
        channel = raw.get("channel")
        if (
            channels is not None
            and isinstance(channel, str)
            and channel.strip()
            and channel not in channels
        ):
            known = ", ".join(sorted(channels)) or "none"
            found.append((("channel",), f"unknown channel {channel!r} (configured: {known})"))
        notification = (info.context or {}).get("kind") == "notification"
        for key in ("subject", "text", "html"):
            text = raw.get(key)
            if isinstance(text, str) and not notification:
                found += [((key,), problem) for problem in domain.placeholder_issues(text)]
        if notification:
            if "consent" not in raw:
                found.append((("consent",), "required for kind notification (the opt-in it needs)"))
        else:
            found += [
                ((key,), "only for kind notification")
                for key in ("not_within", "steps")
                if key in raw
            ]
        steps = raw.get("steps")
        if isinstance(steps, list):
            ids = [s.get("id") for s in steps if isinstance(s, Mapping)]
            found += [
                (("steps", i, "id"), f"step id {sid!r} is given twice")
                for i, sid in enumerate(ids)
                if isinstance(sid, str) and ids.index(sid) != i
            ]
        if "template" in raw:
            found += [
                ((key,), "use either template or text/html, not both")
                for key in ("text", "html")
                if key in raw
            ]
        elif "text" not in raw and "html" not in raw:
            found.append(((), "needs text, html or template"))
        return found


class InactionTriggerModel(Model):
    """A live_action trigger: ``after`` happened and ``missing`` did not follow ``within``."""

    after: Text
    missing: Text
    within: Annotated[float, Check(_duration, {"type": "string", "examples": ["72h"]})]


class SpecModel(Model):
    """A whole campaign spec (one version), as written."""

    id: Slug
    name: Text
    description: Annotated[str, Field(strict=True)] | None = None
    kind: Annotated[str, Check(lambda v: _choice(v, domain.KINDS), {"enum": list(domain.KINDS)})]
    timezone: Annotated[str, Check(_timezone, {"type": "string"})] | None = None
    schedule: ScheduleModel = Field(default_factory=ScheduleModel)
    segment: Any = None
    list_name: Text | None = Field(default=None, alias="list")
    trigger: Any = None
    reward: RewardModel | None = None
    caps: CapsModel = Field(default_factory=CapsModel)
    clearance: ClearanceModel = Field(default_factory=ClearanceModel)
    notify: NotifyModel | None = None

    @model_validator(mode="before")
    @classmethod
    def _context(cls, data: Any, info: ValidationInfo) -> Any:
        """The kind and the reward's currency, for checks in other tables."""
        if isinstance(data, Mapping) and info.context is not None:
            kind = data.get("kind")
            info.context["kind"] = kind if kind in domain.KINDS else None
            reward = data.get("reward")
            currency = reward.get("currency") if isinstance(reward, Mapping) else None
            valid = isinstance(currency, str) and _CURRENCY.fullmatch(currency)
            info.context["currency"] = currency if valid else None
        return data

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: SpecModel | None, info: ValidationInfo
    ) -> Found:
        context = info.context or {}
        kind = context.get("kind")
        found: Found = []
        found += _kind_checks(raw, kind)
        reward = raw.get("reward")
        if isinstance(reward, Mapping):
            found += _reward_checks(reward, context.get("providers"))
            found += _money_checks(raw, reward, value)
            found += _code_placeholder_checks(raw, reward)
        return found

    def to_spec(self, context: Mapping[str, Any]) -> domain.CampaignSpec:
        tables = {"segment": self.segment, "trigger": self.trigger}
        segment_table, trigger_found = _split_trigger(tables, self.kind)
        segment_source = None
        segment = None
        if segment_table is not None:
            segment_source = domain.plain(segment_table)
            segment = parse_segment(segment_table, "segment")
        trigger = None
        if self.kind == "live_action" and trigger_found is not None:
            trigger, _ = _trigger(*trigger_found)
        return domain.CampaignSpec(
            id=self.id,
            name=self.name,
            kind=self.kind,
            timezone=self.timezone or context.get("default_timezone", "UTC"),
            reward=(
                self.reward.to_reward()
                if self.reward is not None
                else domain.Reward(domain.NO_REWARD_PROVIDER)
            ),
            description=self.description,
            schedule=self.schedule.to_schedule(),
            segment=segment,
            segment_source=segment_source,
            list_name=self.list_name if self.kind == "custom_list" else None,
            trigger=trigger,
            caps=self.caps.to_caps(),
            clearance=domain.Clearance(
                required=self.clearance.required,
                lead=self.clearance.lead,
                on_timeout=self.clearance.on_timeout,
            ),
            notify=None
            if self.notify is None
            else domain.Notify(
                channel=self.notify.channel,
                consent=self.notify.consent,
                subject=self.notify.subject,
                text=self.notify.text,
                html=self.notify.html,
                template=self.notify.template,
                not_within=self.notify.not_within,
                steps=tuple(step.to_step() for step in self.notify.steps or ()),
            ),
        )


def _choice(value: Any, choices: tuple[str, ...]) -> str:
    text = _text(value)
    if text not in choices:
        raise Invalid(f"must be one of {' | '.join(choices)}, not {text!r}")
    return text


# --------------------------------------------------------------------------- checks over tables


def _split_trigger(raw: Mapping[str, Any], kind: str | None) -> tuple[Any, tuple[Any, str] | None]:
    """The segment table and the trigger (with its path), accepting ``segment.trigger``."""
    segment = raw.get("segment")
    trigger: tuple[Any, str] | None = None
    if raw.get("trigger") is not None:
        trigger = (raw["trigger"], "trigger")
    if kind == "live_action" and isinstance(segment, Mapping) and "trigger" in segment:
        if trigger is None:
            trigger = (segment["trigger"], "segment.trigger")
        segment = {key: item for key, item in segment.items() if key != "trigger"}
    return segment, trigger


def _segment_issues(error: SegmentError) -> Found:
    return [(str(path), str(message)) for path, message in error.issues]


def _trigger(value: Any, path: str) -> tuple[domain.Trigger | None, Found]:
    if not isinstance(value, Mapping):
        return None, [(path, f"must be a table, not {_a(value)}")]
    found: Found = []
    for key in value:
        if key not in (*_EVENT_TRIGGER_KEYS, *_INACTION_KEYS):
            found.append((f"{path}.{key}", "unknown key"))
    if "event" in value:
        found += [
            (f"{path}.{key}", "use either event = ... or after/missing")
            for key in ("after", "missing")
            if key in value
        ]
        table = {key: item for key, item in value.items() if key in _EVENT_TRIGGER_KEYS}
        try:
            rule = parse_segment(table, path).rule
        except SegmentError as exc:
            return None, found + _segment_issues(exc)
        assert isinstance(rule, EventRule)
        return (domain.Trigger(rule=rule) if not found else None), found
    if "after" in value or "missing" in value:
        found += [
            (f"{path}.{key}", "only with event = ...")
            for key in _EVENT_TRIGGER_KEYS
            if key in value and key not in _INACTION_KEYS
        ]
        table = {key: item for key, item in value.items() if key in _INACTION_KEYS}
        try:
            model = InactionTriggerModel.model_validate(table, context={})
        except Exception as exc:  # a ValidationError: its issues, under the trigger's path
            from pydantic import ValidationError

            if not isinstance(exc, ValidationError):
                raise
            for sub, message in issues_of(exc, SPEC_WORDS):
                if message == SPEC_WORDS.missing and sub == "within":
                    message = "required with after/missing"
                found.append((f"{path}.{sub}" if sub else path, message))
            return None, found
        trigger = domain.Trigger(after=model.after, missing=model.missing, within=model.within)
        return (trigger if not found else None), found
    return None, [*found, (path, "needs event = ..., or after = ... with missing = ... and within")]


def _kind_checks(raw: Mapping[str, Any], kind: str | None) -> Found:
    found: Found = []
    segment, trigger = _split_trigger(raw, kind)
    if kind == "live_action" and raw.get("trigger") is not None:
        inner = raw.get("segment")
        if isinstance(inner, Mapping) and "trigger" in inner:
            found.append(("segment.trigger", "trigger is given twice (also at the top level)"))
    if kind == "notification":
        if "reward" in raw:
            found.append(("reward", "a notification campaign grants nothing: remove [reward]"))
        if not isinstance(raw.get("notify"), Mapping):
            found.append(("notify", "required for kind notification (its message)"))
    elif "reward" not in raw:
        found.append(("reward", SPEC_WORDS.missing))
    if segment is None:
        if kind in ("past_behavior", "notification"):
            found.append(
                (
                    "segment",
                    f"required for kind {kind} (an empty [segment] table targets every customer)",
                )
            )
    elif not isinstance(segment, Mapping):
        found.append(("segment", f"must be a table, not {_a(segment)}"))
    else:
        try:
            parse_segment(segment, "segment")
        except SegmentError as exc:
            found += _segment_issues(exc)
    if kind == "custom_list" and "list" not in raw:
        found.append(("list", SPEC_WORDS.missing))
    if "list" in raw and kind is not None and kind != "custom_list":
        found.append(
            (
                "list",
                f"only for kind custom_list; in a {kind} campaign use a"
                ' { list = "name" } rule in the segment',
            )
        )
    if kind == "live_action":
        if trigger is None:
            found.append(
                (
                    "trigger",
                    'required for kind live_action, e.g. { event = "cart_abandoned" } or'
                    ' { after = "signup", missing = "first_deposit", within = "72h" }',
                )
            )
        else:
            found += _trigger(*trigger)[1]
    elif trigger is not None and kind is not None:
        found.append((trigger[1], "only for kind live_action"))
    return found


def _reward_checks(reward: Mapping[str, Any], providers: Mapping[str, Any] | None) -> Found:
    """Each reward's provider is known and validates its own keys with its options model."""
    from promod.plugins.options import validate_options

    found: Found = []
    known = providers if providers is not None else builtin_providers()
    tables: list[tuple[tuple[str, ...], Mapping[str, Any]]] = [(("reward",), reward)]
    fallback = reward.get("fallback")
    if isinstance(fallback, Mapping):
        tables.append((("reward", "fallback"), fallback))
    for path, table in tables:
        name = table.get("provider")
        if not isinstance(name, str):
            continue
        if name not in known:
            if providers is not None:
                listed = ", ".join(sorted(providers)) or "none"
                found.append(((*path, "provider"), f"unknown provider {name!r} (known: {listed})"))
            continue
        provider = known[name]
        if provider is None:
            continue  # known by name only
        if getattr(provider, "requires_amount", False) and "amount" not in table:
            found.append(((*path, "amount"), f"required for provider {name}"))
        own = {key: item for key, item in table.items() if key in ("code", "pool", "options")}
        _, problems = validate_options(provider, own, path, words=SPEC_WORDS)
        for issue_path, message in problems:
            if message == "unknown key" and issue_path.count(".") == len(path):
                message = f"not used by provider {name}"
            found.append((issue_path, message))
    return found


def builtin_providers() -> dict[str, Any]:
    """The built-in providers, for a spec checked without a plugin host."""
    from promod.codepool.provider import CodePoolProvider
    from promod.rewards.coupon import Coupon
    from promod.rewards.wallet import WalletPoints

    return {p.name: p for p in (WalletPoints(), Coupon(), CodePoolProvider())}


def _money_checks(
    raw: Mapping[str, Any], reward: Mapping[str, Any], value: SpecModel | None
) -> Found:
    found: Found = []
    currency = reward.get("currency")
    fallback = reward.get("fallback")
    if isinstance(fallback, Mapping):
        if "fallback" in fallback:
            found.append(
                (("reward", "fallback", "fallback"), "a fallback cannot have its own fallback")
            )
        other = fallback.get("currency")
        if isinstance(other, str) and isinstance(currency, str) and other != currency:
            found.append(
                (
                    ("reward", "fallback", "currency"),
                    f"must be the reward's currency {currency} (caps are in one currency)",
                )
            )
    fallback_value = isinstance(fallback, Mapping) and "value" in fallback
    fallback_currency = isinstance(fallback, Mapping) and "currency" in fallback
    if "currency" not in reward and (
        "value" in reward or (fallback_value and not fallback_currency)
    ):
        found.append((("reward", "currency"), "required when a value is given"))
    caps = raw.get("caps")
    if not isinstance(caps, Mapping) or not ("budget" in caps or "daily_budget" in caps):
        return found
    keys = " and ".join(f"caps.{key}" for key in ("budget", "daily_budget") if key in caps)
    tables: list[tuple[str, Mapping[str, Any]]] = [("reward", reward)]
    if isinstance(fallback, Mapping):
        tables.append(("reward.fallback", fallback))
    for path, table in tables:
        if "value" not in table:
            found.append((f"{path}.value", f"required with {keys} (what one reward costs)"))
    if "currency" not in reward and not any(loc == ("reward", "currency") for loc, _ in found):
        found.append((("reward", "currency"), f"required with {keys}"))
    if value is None or value.reward is None:
        return found
    exponent = domain.currency_exponent(value.reward.currency)
    costs = [("reward.value", value.reward.value)]
    if value.reward.fallback is not None:
        costs.append(("reward.fallback.value", value.reward.fallback.value))
    for key in ("budget", "daily_budget"):
        cap = getattr(value.caps, key)
        for name, cost in costs:
            if cap is not None and cost is not None and cap < cost:
                found.append(
                    (
                        ("caps", key),
                        f"{format_money(cap, exponent)} is less than {name} "
                        f"{format_money(cost, exponent)}: no such reward could ever be granted",
                    )
                )
    return found


def _code_placeholder_checks(raw: Mapping[str, Any], reward: Mapping[str, Any]) -> Found:
    notify = raw.get("notify")
    if not isinstance(notify, Mapping):
        return []
    providers = [reward.get("provider")]
    fallback = reward.get("fallback")
    if isinstance(fallback, Mapping):
        providers.append(fallback.get("provider"))
    if any(p != "wallet_points" for p in providers):
        return []
    return [
        (("notify", key), "${reward_code} is never set: the reward gives no code")
        for key in ("subject", "text", "html")
        if isinstance(notify.get(key), str) and "${reward_code}" in notify[key]
    ]
