"""Campaign spec parsing: examples, every issue with its path, money, placeholders, round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promod.campaigns.spec import (
    PLACEHOLDERS,
    AudienceRank,
    CampaignSpec,
    SpecError,
    currency_exponent,
    load_spec,
    load_spec_file,
    parse_spec,
    placeholder_issues,
    render_placeholders,
    spec_warnings,
)
from promod.units import format_money

EXAMPLES = sorted((Path(__file__).parents[2] / "config" / "campaigns").glob("*.toml"))
PROVIDERS = {"wallet_points", "coupon", "code_pool", "partner_voucher"}
CHANNELS = {"mail", "backend"}


def minimal(**overrides: Any) -> dict[str, Any]:
    """The smallest valid spec, with top-level keys replaced by ``overrides``."""
    data: dict[str, Any] = {
        "id": "test-1",
        "name": "Test",
        "kind": "past_behavior",
        "segment": {"tag": "vip"},
        "reward": {"provider": "wallet_points", "amount": "100"},
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def parse(data: dict[str, Any], **kwargs: Any) -> CampaignSpec:
    kwargs.setdefault("default_timezone", "UTC")
    return parse_spec(data, **kwargs)


def issues_of(data: dict[str, Any], **kwargs: Any) -> dict[str, str]:
    """path -> message (the last one per path) of a spec that must fail."""
    with pytest.raises(SpecError) as caught:
        parse(data, **kwargs)
    return {issue.path: issue.message for issue in caught.value.issues}


# ---------------------------------------------------------------- examples


def test_there_are_three_example_specs() -> None:
    assert {path.stem for path in EXAMPLES} == {"winback-30d", "welcome-coupon", "xmas-codes"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_specs_parse_and_round_trip(path: Path) -> None:
    spec = load_spec_file(path, default_timezone="UTC", providers=PROVIDERS, channels=CHANNELS)
    assert spec.id == path.stem
    stored = json.loads(json.dumps(spec.to_dict()))
    assert parse(stored, providers=PROVIDERS, channels=CHANNELS) == spec
    assert load_spec(json.dumps(stored), "json") == spec


def test_winback_example_values_in_minor_units() -> None:
    spec = load_spec_file(EXAMPLES[[p.stem for p in EXAMPLES].index("winback-30d")])
    assert spec.kind == "past_behavior"
    assert spec.timezone == "Europe/Berlin"
    assert spec.reward.provider == "wallet_points"
    assert (spec.reward.amount_minor, spec.reward.amount_exponent) == (500, 0)
    assert spec.reward.value_minor == 500
    assert spec.caps.budget_minor == 5_000_000
    assert spec.caps.daily_budget_minor == 500_000
    assert spec.caps.audience_rank == AudienceRank("ltv", descending=True)
    assert spec.schedule.local_time == time(10, 0)
    assert spec.clearance.required and spec.clearance.lead == 1800.0
    assert spec.segment is not None


def test_xmas_example_fallback_inherits_currency() -> None:
    spec = load_spec_file(EXAMPLES[[p.stem for p in EXAMPLES].index("xmas-codes")])
    assert spec.reward.pool == "XMAS25"
    assert spec.reward.fallback is not None
    assert spec.reward.fallback.currency == "EUR"
    assert spec.reward.fallback.value_minor == 200
    assert spec.schedule.delivery == "best_time"


# ---------------------------------------------------------------- defaults and basics


def test_minimal_spec_gets_documented_defaults() -> None:
    spec = parse(minimal(), default_timezone="Europe/Vienna")
    assert spec.timezone == "Europe/Vienna"
    assert spec.schedule.start is None
    assert spec.schedule.delivery == "immediate"
    assert spec.caps.per_customer == 1
    assert spec.caps.audience is None
    assert not spec.clearance.required
    assert spec.clearance.lead == 1800.0
    assert spec.clearance.on_timeout == "reject"
    assert spec.notify is None


def test_spec_with_many_mistakes_reports_every_path_at_once() -> None:
    data = {
        "id": "Not A Slug",
        "kind": "sometimes",
        "timezone": "Mars/Olympus",
        "colour": "red",
        "schedule": {"start": "tomorrow", "delivery": "local_time", "extra": 1},
        "segment": {"all": [{"tag": "x"}, {"event": "purchase", "within": "9x"}]},
        "reward": {"provider": "wallet_points", "amount": 5.5, "value": "1", "currency": "eur"},
        "caps": {"audience": 0, "budget": 100.0, "per_customer": "1"},
        "clearance": {"required": "yes", "lead": "soon", "on_timeout": "maybe"},
        "notify": {"channel": "pager", "text": "Hi ${first_name}"},
    }
    issues = issues_of(data, providers=PROVIDERS, channels=CHANNELS)
    assert set(issues) == {
        "id",
        "name",
        "kind",
        "timezone",
        "colour",
        "schedule.start",
        "schedule.extra",
        "schedule.local_time",
        "segment.all[1].within",
        "reward.amount",
        "reward.currency",
        "caps.audience",
        "caps.budget",
        "caps.per_customer",
        "clearance.required",
        "clearance.lead",
        "clearance.on_timeout",
        "notify.channel",
        "notify.text",
    }
    assert issues["colour"] == "unknown key"
    assert issues["name"] == "required"
    assert "float" in issues["reward.amount"]
    assert "${first_name}" in issues["notify.text"]


def test_spec_error_lists_issues_in_its_message_and_as_dicts() -> None:
    with pytest.raises(SpecError) as caught:
        parse(minimal(id=None, caps={"audience": "lots"}))
    text = str(caught.value)
    assert "2 issues" in text
    assert "id: required" in text
    assert "caps.audience: must be an integer" in text
    assert {"path": "id", "message": "required"} in caught.value.as_dicts()


@pytest.mark.parametrize(
    ("section", "value"),
    [
        ("schedule", {"start": "now", "every": "day"}),
        ("reward", {"provider": "wallet_points", "amount": "1", "points": "1"}),
        ("caps", {"budgett": "1.00"}),
        ("clearance", {"required": True, "deadline": "1h"}),
        ("notify", {"channel": "mail", "text": "x", "body": "y"}),
    ],
)
def test_unknown_keys_in_every_section_are_errors(section: str, value: dict[str, Any]) -> None:
    issues = issues_of(minimal(**{section: value}))
    unknown = [path for path, message in issues.items() if message == "unknown key"]
    assert len(unknown) == 1 and unknown[0].startswith(f"{section}.")


def test_not_a_table_is_refused() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec([1, 2], default_timezone="UTC")  # type: ignore[arg-type]
    assert caught.value.issues[0].path == ""


@pytest.mark.parametrize("good", ["a", "winback-30d", "x_1", "0" * 64])
def test_id_slugs_accepted(good: str) -> None:
    assert parse(minimal(id=good)).id == good


@pytest.mark.parametrize("bad", ["", "-x", "Upper", "a b", "a" * 65, "ü", 7])
def test_id_slugs_refused(bad: Any) -> None:
    assert "id" in issues_of(minimal(id=bad))


# ---------------------------------------------------------------- money


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("reward.amount", minimal(reward={"provider": "wallet_points", "amount": 500.0})),
        (
            "reward.value",
            minimal(reward={"provider": "wallet_points", "amount": "1", "value": 5.0}),
        ),
        (
            "caps.budget",
            minimal(
                reward={"provider": "wallet_points", "amount": "1", "value": "1.00"},
                caps={"budget": 100.5},
            ),
        ),
        (
            "caps.daily_budget",
            minimal(
                reward={"provider": "wallet_points", "amount": "1", "value": "1.00"},
                caps={"daily_budget": 100.5},
            ),
        ),
        (
            "reward.fallback.value",
            minimal(
                reward={
                    "provider": "code_pool",
                    "pool": "P",
                    "currency": "EUR",
                    "fallback": {"provider": "wallet_points", "amount": "2", "value": 2.0},
                }
            ),
        ),
        (
            "reward.fallback.amount",
            minimal(
                reward={
                    "provider": "code_pool",
                    "pool": "P",
                    "fallback": {"provider": "wallet_points", "amount": 2.0},
                }
            ),
        ),
    ],
)
def test_float_money_is_refused_naming_the_key(path: str, data: dict[str, Any]) -> None:
    issues = issues_of(data)
    assert path in issues
    assert "float" in issues[path]


def test_integer_money_is_refused_with_a_string_hint() -> None:
    issues = issues_of(minimal(reward={"provider": "wallet_points", "amount": 500}))
    assert issues["reward.amount"] == 'must be a decimal string such as "500", not an integer'


@pytest.mark.parametrize("bad", ["-5", "5,00", "1e3", "NaN", " 5", "5.", ".5", "+5", "0"])
def test_malformed_or_zero_amounts_are_refused(bad: str) -> None:
    assert "reward.amount" in issues_of(
        minimal(reward={"provider": "wallet_points", "amount": bad})
    )


@pytest.mark.parametrize(
    ("amount", "currency", "minor", "exponent"),
    [
        ("500", None, 500, 0),
        ("500", "EUR", 500, 0),
        ("5.00", "EUR", 500, 2),
        ("1.5", None, 150, 2),
        ("2.125", "KWD", 2125, 3),
        ("500", "JPY", 500, 0),
    ],
)
def test_amount_has_no_decimals_unless_written_then_the_currency_exponent(
    amount: str, currency: str | None, minor: int, exponent: int
) -> None:
    reward: dict[str, Any] = {"provider": "wallet_points", "amount": amount}
    if currency:
        reward["currency"] = currency
    spec = parse(minimal(reward=reward))
    assert (spec.reward.amount_minor, spec.reward.amount_exponent) == (minor, exponent)
    assert spec.reward.amount == format_money(minor, exponent)


@pytest.mark.parametrize(
    ("currency", "value", "minor"),
    [("EUR", "5.00", 500), ("EUR", "5", 500), ("JPY", "500", 500), ("KWD", "1.250", 1250)],
)
def test_value_uses_the_currency_exponent(currency: str, value: str, minor: int) -> None:
    reward = {"provider": "wallet_points", "amount": "1", "value": value, "currency": currency}
    spec = parse(minimal(reward=reward))
    assert spec.reward.value_minor == minor


def test_more_decimals_than_the_currency_has_are_refused() -> None:
    reward = {"provider": "wallet_points", "amount": "1", "value": "5.5", "currency": "JPY"}
    assert "JPY has no minor unit" in issues_of(minimal(reward=reward))["reward.value"]
    reward = {"provider": "wallet_points", "amount": "1", "value": "5.555", "currency": "EUR"}
    assert "EUR has 2 decimals" in issues_of(minimal(reward=reward))["reward.value"]


def test_currency_exponent_table() -> None:
    assert currency_exponent("EUR") == 2
    assert currency_exponent("USD") == 2
    assert currency_exponent("JPY") == 0
    assert currency_exponent("KRW") == 0
    assert currency_exponent("KWD") == 3
    assert currency_exponent(None) == 2


@pytest.mark.parametrize("bad", ["eur", "EURO", "E1R", 978])
def test_currency_must_be_three_upper_case_letters(bad: Any) -> None:
    reward = {"provider": "wallet_points", "amount": "1", "currency": bad}
    assert "reward.currency" in issues_of(minimal(reward=reward))


def test_value_without_currency_is_refused() -> None:
    issues = issues_of(minimal(reward={"provider": "wallet_points", "amount": "1", "value": "1"}))
    assert issues == {"reward.currency": "required when a value is given"}


def test_budget_caps_need_a_reward_value() -> None:
    issues = issues_of(minimal(caps={"budget": "100.00", "daily_budget": "10.00"}))
    assert set(issues) == {"reward.value", "reward.currency"}
    assert "caps.budget and caps.daily_budget" in issues["reward.value"]


def test_budget_caps_need_a_fallback_value_too() -> None:
    reward = {
        "provider": "code_pool",
        "pool": "P",
        "value": "5.00",
        "currency": "EUR",
        "fallback": {"provider": "wallet_points", "amount": "200"},
    }
    issues = issues_of(minimal(reward=reward, caps={"budget": "100.00"}))
    assert set(issues) == {"reward.fallback.value"}


@pytest.mark.parametrize(
    ("caps", "path"),
    [({"daily_budget": "4.99"}, "caps.daily_budget"), ({"budget": "1.00"}, "caps.budget")],
)
def test_cap_that_can_never_be_met_is_an_issue(caps: dict[str, str], path: str) -> None:
    reward = {"provider": "wallet_points", "amount": "1", "value": "5.00", "currency": "EUR"}
    issues = issues_of(minimal(reward=reward, caps=caps))
    assert set(issues) == {path}
    assert "less than reward.value 5.00" in issues[path]


def test_cap_below_the_fallback_value_is_an_issue() -> None:
    reward = {
        "provider": "code_pool",
        "pool": "P",
        "value": "1.00",
        "currency": "EUR",
        "fallback": {"provider": "wallet_points", "amount": "200", "value": "2.00"},
    }
    issues = issues_of(minimal(reward=reward, caps={"daily_budget": "1.50"}))
    assert "reward.fallback.value 2.00" in issues["caps.daily_budget"]


def test_budget_equal_to_value_is_fine() -> None:
    reward = {"provider": "wallet_points", "amount": "1", "value": "5.00", "currency": "EUR"}
    spec = parse(minimal(reward=reward, caps={"daily_budget": "5.00", "budget": "5"}))
    assert spec.caps.daily_budget_minor == spec.caps.budget_minor == 500


def test_fallback_with_another_currency_is_refused() -> None:
    reward = {
        "provider": "code_pool",
        "pool": "P",
        "currency": "EUR",
        "fallback": {"provider": "wallet_points", "amount": "2", "currency": "USD"},
    }
    assert "reward.fallback.currency" in issues_of(minimal(reward=reward))


def test_fallback_cannot_nest() -> None:
    inner = {"provider": "wallet_points", "amount": "1"}
    reward = {
        "provider": "code_pool",
        "pool": "P",
        "fallback": {"provider": "wallet_points", "amount": "2", "fallback": inner},
    }
    assert set(issues_of(minimal(reward=reward))) == {"reward.fallback.fallback"}


# ---------------------------------------------------------------- reward providers


@pytest.mark.parametrize(
    ("reward", "path"),
    [
        ({"provider": "coupon"}, "reward.code"),
        ({"provider": "code_pool"}, "reward.pool"),
        ({"provider": "wallet_points"}, "reward.amount"),
        ({"provider": "coupon", "code": "X", "pool": "P"}, "reward.pool"),
        ({"provider": "wallet_points", "amount": "1", "code": "X"}, "reward.code"),
        ({"provider": "wallet_points", "amount": "1", "options": {"a": 1}}, "reward.options"),
        ({"amount": "1"}, "reward.provider"),
    ],
)
def test_builtin_provider_shapes(reward: dict[str, Any], path: str) -> None:
    assert path in issues_of(minimal(reward=reward))


def test_plugin_provider_takes_options() -> None:
    reward = {"provider": "partner_voucher", "value": "10.00", "currency": "EUR"}
    reward["options"] = {"brand": "acme", "sku": 12}
    spec = parse(minimal(reward=reward), providers=PROVIDERS)
    assert spec.reward.options == {"brand": "acme", "sku": 12}


def test_unknown_provider_is_refused_when_providers_are_known() -> None:
    data = minimal(reward={"provider": "space_miles", "amount": "1"})
    assert parse(data).reward.provider == "space_miles"
    assert "space_miles" in issues_of(data, providers=PROVIDERS)["reward.provider"]


def test_missing_reward_is_an_issue() -> None:
    assert issues_of(minimal(reward=None)) == {"reward": "required"}


# ---------------------------------------------------------------- kinds


def test_past_behavior_needs_a_segment_and_empty_means_everyone() -> None:
    assert "segment" in issues_of(minimal(segment=None))
    spec = parse(minimal(segment={}))
    assert spec.segment_source == {}
    assert any(w.path == "segment" for w in spec_warnings(spec))


def test_segment_issues_keep_their_exact_paths() -> None:
    data = minimal(segment={"all": [{"tag": "a"}, {"tag": "b"}, {"event": "x", "within": "9x"}]})
    issues = issues_of(data)
    assert list(issues) == ["segment.all[2].within"]
    assert "9x" in issues["segment.all[2].within"]


def test_custom_list_needs_list_and_may_filter_with_a_segment() -> None:
    issues = issues_of(minimal(kind="custom_list", segment=None))
    assert set(issues) == {"list"}
    spec = parse(minimal(kind="custom_list", list="vip-2026", segment={"tag": "x"}))
    assert spec.list_name == "vip-2026"
    assert spec.segment is not None


def test_list_is_only_for_custom_list() -> None:
    assert "list" in issues_of(minimal(list="vip"))


def test_live_action_event_trigger() -> None:
    trigger = {"event": "cart_abandoned", "where": {"total": {"gte": "50"}}}
    spec = parse(minimal(kind="live_action", segment=None, trigger=trigger))
    assert spec.trigger is not None and spec.trigger.rule is not None
    assert spec.trigger.rule.event == "cart_abandoned"
    assert parse(spec.to_dict()) == spec


def test_live_action_trigger_written_inside_the_segment_table() -> None:
    segment = {"tag": "vip", "trigger": {"event": "deposit", "gte": 3, "within": "7d"}}
    spec = parse(minimal(kind="live_action", segment=segment))
    assert spec.trigger is not None and spec.trigger.rule is not None
    assert spec.segment_source == {"tag": "vip"}
    assert "trigger" in spec.to_dict()


def test_live_action_inaction_trigger() -> None:
    trigger = {"after": "signup", "missing": "first_deposit", "within": "72h"}
    spec = parse(minimal(kind="live_action", segment=None, trigger=trigger))
    assert spec.trigger is not None
    assert (spec.trigger.after, spec.trigger.missing, spec.trigger.within) == (
        "signup",
        "first_deposit",
        72 * 3600.0,
    )
    assert parse(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("trigger", "paths"),
    [
        (None, {"trigger"}),
        ({}, {"trigger"}),
        ({"after": "signup"}, {"trigger.missing", "trigger.within"}),
        ({"after": "a", "missing": "b", "within": "1h", "gte": 2}, {"trigger.gte"}),
        ({"event": "a", "after": "b"}, {"trigger.after"}),
        ({"event": "a", "where": {"total": {"gte": 5.5}}}, {"trigger.where.total.gte"}),
        ({"event": "a", "all": []}, {"trigger.all"}),
        ("cart", {"trigger"}),
    ],
)
def test_live_action_trigger_shapes(trigger: Any, paths: set[str]) -> None:
    data = minimal(kind="live_action", segment=None, trigger=trigger)
    assert set(issues_of(data)) == paths


def test_trigger_only_for_live_action() -> None:
    assert "trigger" in issues_of(minimal(trigger={"event": "x"}))


# ---------------------------------------------------------------- schedule


def test_schedule_start_end_and_local_time() -> None:
    schedule = {
        "start": "2026-12-01T10:00:00+01:00",
        "end": "2026-12-02T10:00:00Z",
        "delivery": "local_time",
        "local_time": "09:30",
        "recurring": "daily 08:00",
    }
    spec = parse(minimal(schedule=schedule))
    tz = timezone(timedelta(hours=1))
    assert spec.schedule.start == datetime(2026, 12, 1, 10, tzinfo=tz)
    assert spec.schedule.end == datetime(2026, 12, 2, 10, tzinfo=UTC)
    assert spec.schedule.local_time == time(9, 30)
    assert spec.schedule.recurring is not None
    assert str(spec.schedule.recurring) == "daily 08:00"


def test_toml_native_datetimes_and_times_are_accepted() -> None:
    text = """
id = "t"
name = "T"
kind = "past_behavior"
[segment]
tag = "x"
[schedule]
start = 2026-12-01T10:00:00+01:00
delivery = "local_time"
local_time = 10:00:00
[reward]
provider = "wallet_points"
amount = "1"
"""
    spec = load_spec(text, "toml")
    assert spec.schedule.start is not None and spec.schedule.start.utcoffset() is not None
    assert spec.schedule.local_time == time(10, 0)


@pytest.mark.parametrize(
    ("schedule", "path"),
    [
        ({"start": "2026-12-01T10:00:00"}, "schedule.start"),
        ({"start": "soon"}, "schedule.start"),
        (
            {"start": "2026-12-02T00:00:00Z", "end": "2026-12-01T00:00:00Z"},
            "schedule.end",
        ),
        ({"delivery": "local_time"}, "schedule.local_time"),
        ({"delivery": "local_time", "local_time": "25:00"}, "schedule.local_time"),
        ({"delivery": "local_time", "local_time": "9:00"}, "schedule.local_time"),
        ({"delivery": "immediate", "local_time": "09:00"}, "schedule.local_time"),
        ({"delivery": "asap"}, "schedule.delivery"),
        ({"recurring": "weekly 10:00"}, "schedule.recurring"),
        ({"recurring": "daily 10"}, "schedule.recurring"),
    ],
)
def test_schedule_issues(schedule: dict[str, Any], path: str) -> None:
    assert path in issues_of(minimal(schedule=schedule))


def test_best_time_falls_back_to_ten_unless_given() -> None:
    spec = parse(minimal(schedule={"delivery": "best_time"}))
    assert spec.schedule.local_time == time(10, 0)
    spec = parse(minimal(schedule={"delivery": "best_time", "local_time": "18:00"}))
    assert spec.schedule.local_time == time(18, 0)


def test_live_action_cannot_recur() -> None:
    data = minimal(
        kind="live_action",
        segment=None,
        trigger={"event": "x"},
        schedule={"recurring": "daily 10:00"},
    )
    assert "schedule.recurring" in issues_of(data)


# ---------------------------------------------------------------- caps and clearance


@pytest.mark.parametrize(
    ("text", "rank"),
    [
        ("random", AudienceRank()),
        ("attr:ltv desc", AudienceRank("ltv", True)),
        ("attr:signup_date asc", AudienceRank("signup_date", False)),
    ],
)
def test_audience_rank(text: str, rank: AudienceRank) -> None:
    spec = parse(minimal(caps={"audience": 10, "audience_rank": text}))
    assert spec.caps.audience_rank == rank
    assert str(rank) == text


def test_audience_rank_needs_audience_and_a_known_form() -> None:
    assert "caps.audience_rank" in issues_of(minimal(caps={"audience_rank": "random"}))
    assert "caps.audience_rank" in issues_of(
        minimal(caps={"audience": 5, "audience_rank": "attr:ltv"})
    )


@pytest.mark.parametrize("key", ["audience", "count", "daily_count", "per_customer"])
@pytest.mark.parametrize("bad", [0, -1, True, "5", 1.0])
def test_counting_caps_are_positive_integers(key: str, bad: Any) -> None:
    assert f"caps.{key}" in issues_of(minimal(caps={key: bad}))


def test_clearance_values() -> None:
    spec = parse(minimal(clearance={"required": True, "lead": "2h", "on_timeout": "approve"}))
    assert spec.clearance.required
    assert spec.clearance.lead == 7200.0
    assert spec.clearance.on_timeout == "approve"
    assert any(w.path == "clearance.on_timeout" for w in spec_warnings(spec))
    assert "clearance.lead" in issues_of(minimal(clearance={"lead": "0s"}))
    assert "clearance.lead" in issues_of(minimal(clearance={"lead": 30}))


# ---------------------------------------------------------------- notify and placeholders


def test_every_documented_placeholder_is_accepted() -> None:
    text = " ".join(f"${{{name}}}" for name in sorted(PLACEHOLDERS)) + " costs $$5"
    reward = {"provider": "coupon", "code": "X"}
    notify = {"channel": "mail", "subject": text, "text": text, "html": text}
    spec = parse(minimal(reward=reward, notify=notify), channels=CHANNELS)
    assert spec.notify is not None and spec.notify.html == text


@pytest.mark.parametrize("key", ["subject", "text", "html"])
def test_unknown_placeholder_is_an_issue_with_its_path(key: str) -> None:
    notify = {"channel": "mail", "text": "fine", key: "Hello ${first_name}"}
    issues = issues_of(minimal(notify=notify))
    assert list(issues) == [f"notify.{key}"]
    assert "unknown placeholder ${first_name}" in issues[f"notify.{key}"]


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("plain", 0),
        ("$$ and $${email}", 0),
        ("${email}", 0),
        ("win $5", 1),
        ("${email", 1),
        ("$email", 1),
        ("${}", 1),
        ("${nope} ${nope} ${other}", 2),
        ("trailing $", 1),
    ],
)
def test_placeholder_issues(text: str, problems: int) -> None:
    assert len(placeholder_issues(text)) == problems


def test_render_placeholders() -> None:
    text = "Hi ${email}, ${reward_amount} points ($$${reward_value}) ${expires_at}."
    values = {"email": "a@example.org", "reward_amount": "500", "reward_value": "5.00"}
    assert render_placeholders(text, values) == "Hi a@example.org, 500 points ($5.00) ."


def test_reward_code_placeholder_needs_a_reward_with_a_code() -> None:
    notify = {"channel": "mail", "text": "Your code: ${reward_code}"}
    assert "notify.text" in issues_of(minimal(notify=notify))
    reward = {"provider": "code_pool", "pool": "P"}
    assert parse(minimal(reward=reward, notify=notify)).notify is not None


@pytest.mark.parametrize(
    ("notify", "path"),
    [
        ({"text": "x"}, "notify.channel"),
        ({"channel": "mail"}, "notify"),
        ({"channel": "mail", "template": "w", "text": "x"}, "notify.text"),
        ({"channel": "mail", "template": "../etc/passwd"}, "notify.template"),
        ({"channel": "mail", "text": ""}, "notify.text"),
        ({"channel": "mail", "text": 5}, "notify.text"),
        ({"channel": "mail", "text": "x", "consent": ""}, "notify.consent"),
    ],
)
def test_notify_issues(notify: dict[str, Any], path: str) -> None:
    assert path in issues_of(minimal(notify=notify))


def test_unknown_channel_is_refused_when_channels_are_known() -> None:
    data = minimal(notify={"channel": "sms", "text": "x"})
    assert parse(data).notify is not None
    assert "sms" in issues_of(data, channels=CHANNELS)["notify.channel"]


# ---------------------------------------------------------------- loading


def test_invalid_toml_and_json_are_spec_errors() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec("id = ", "toml")
    assert caught.value.issues[0].path == ""
    assert "TOML" in caught.value.issues[0].message
    with pytest.raises(SpecError):
        load_spec("{", "json")
    with pytest.raises(SpecError):
        load_spec("[]", "json")


def test_json_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(minimal()))
    assert load_spec_file(path).id == "test-1"


def test_summary_has_a_line_per_section() -> None:
    spec = load_spec_file(EXAMPLES[[p.stem for p in EXAMPLES].index("winback-30d")])
    summary = spec.summary()
    assert list(summary)[:2] == ["id", "name"]
    for key in ("kind", "schedule", "segment", "reward", "caps", "clearance", "notify"):
        assert key in summary
    assert "5.00 EUR" in summary["reward"]
    assert "budget 50000.00 EUR" in summary["caps"]


def test_warnings_for_a_spec_without_limits() -> None:
    spec = parse(minimal(notify={"channel": "mail", "text": "hi"}))
    paths = {warning.path for warning in spec_warnings(spec)}
    assert paths == {"caps", "clearance.required", "notify.consent"}


# ---------------------------------------------------------------- round trip


ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]
SEGMENTS: list[dict[str, Any]] = [
    {},
    {"tag": "vip"},
    {"all": [{"tag": "a"}, {"attr": "country", "in": ["DE", "AT"]}]},
    {"any": [{"event": "purchase", "within": "90d", "sum": "amount", "gte": "100.50"}]},
    {"not": {"event": "purchase", "within": "30d"}, "consent": "marketing_email"},
]
TRIGGERS: list[dict[str, Any]] = [
    {"event": "signup"},
    {"event": "cart_abandoned", "where": {"total": {"gte": "50"}}},
    {"event": "deposit", "within": "7d", "gte": 3},
    {"after": "signup", "missing": "first_deposit", "within": "72h"},
]
slugs = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True)
names = st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != "")
hhmm = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))


def money(minor: int, exponent: int) -> str:
    return format_money(minor, exponent)


@st.composite
def rewards(draw: st.DrawFn, currency: str | None, top: bool = True) -> dict[str, Any]:
    provider = draw(st.sampled_from(["wallet_points", "coupon", "code_pool", "partner_voucher"]))
    out: dict[str, Any] = {"provider": provider}
    exponent = currency_exponent(currency)
    if provider == "wallet_points" or draw(st.booleans()):
        decimals = draw(st.sampled_from([0, exponent]))
        out["amount"] = money(draw(st.integers(1, 10**9)), decimals)
    if provider == "coupon":
        out["code"] = draw(st.sampled_from(["WELCOME10", "X-1"]))
    if provider == "code_pool":
        out["pool"] = draw(st.sampled_from(["XMAS25", "pool.a"]))
    if provider == "partner_voucher" and draw(st.booleans()):
        out["options"] = {"brand": "acme", "tiers": [1, 2]}
    if currency is not None:
        out["value"] = money(draw(st.integers(0, 10**6)), exponent)
        if top or draw(st.booleans()):
            out["currency"] = currency
    if top and draw(st.booleans()):
        out["fallback"] = draw(rewards(currency, top=False))
    return out


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["past_behavior", "live_action", "custom_list"]))
    data: dict[str, Any] = {"id": draw(slugs), "name": draw(names), "kind": kind}
    if draw(st.booleans()):
        data["description"] = draw(st.text(max_size=40))
    if draw(st.booleans()):
        data["timezone"] = draw(st.sampled_from(ZONES))
    schedule: dict[str, Any] = {}
    if draw(st.booleans()):
        start = draw(instants)
        offset = timezone(timedelta(minutes=draw(st.integers(-12, 14)) * 60))
        schedule["start"] = start.astimezone(offset).isoformat()
        if draw(st.booleans()):
            schedule["end"] = (start + timedelta(hours=draw(st.integers(1, 5000)))).isoformat()
    delivery = draw(st.sampled_from(["immediate", "local_time", "best_time", None]))
    if delivery is not None:
        schedule["delivery"] = delivery
        if delivery == "local_time" or (delivery == "best_time" and draw(st.booleans())):
            schedule["local_time"] = draw(hhmm)
    if kind != "live_action" and draw(st.booleans()):
        schedule["recurring"] = f"daily {draw(hhmm)}"
    if schedule or draw(st.booleans()):
        data["schedule"] = schedule
    if kind == "past_behavior" or draw(st.booleans()):
        data["segment"] = draw(st.sampled_from(SEGMENTS))
    if kind == "custom_list":
        data["list"] = draw(st.sampled_from(["vip-2026", "crm:main"]))
    if kind == "live_action":
        data["trigger"] = draw(st.sampled_from(TRIGGERS))
    currency = draw(st.sampled_from([None, "EUR", "JPY", "KWD"]))
    reward = draw(rewards(currency))
    data["reward"] = reward
    caps: dict[str, Any] = {}
    for key in ("audience", "count", "daily_count", "per_customer"):
        if draw(st.booleans()):
            caps[key] = draw(st.integers(1, 10**6))
    if "audience" in caps and draw(st.booleans()):
        caps["audience_rank"] = draw(st.sampled_from(["random", "attr:ltv desc", "attr:x asc"]))
    fallback_value = reward.get("fallback", {"value": "0"}).get("value")
    if currency is not None and fallback_value is not None:
        exponent = currency_exponent(currency)
        floor = max(int(reward["value"].replace(".", "")), int(fallback_value.replace(".", "")))
        for key in ("budget", "daily_budget"):
            if draw(st.booleans()):
                caps[key] = money(floor + draw(st.integers(1, 10**8)), exponent)
    if caps:
        data["caps"] = caps
    if draw(st.booleans()):
        data["clearance"] = {
            "required": draw(st.booleans()),
            "lead": draw(st.sampled_from(["30m", "1h30m", "45s", "2d"])),
            "on_timeout": draw(st.sampled_from(["reject", "approve"])),
        }
    if draw(st.booleans()):
        notify: dict[str, Any] = {"channel": draw(st.sampled_from(sorted(CHANNELS)))}
        if draw(st.booleans()):
            notify["consent"] = "marketing_email"
        if draw(st.booleans()):
            notify["template"] = "winback"
        else:
            notify["text"] = "You got ${reward_amount} $$ ${email}"
            if draw(st.booleans()):
                notify["html"] = "<p>${reward_value} ${currency}</p>"
        if draw(st.booleans()):
            notify["subject"] = "Hi ${customer_id}"
        data["notify"] = notify
    return data


@settings(max_examples=150, deadline=None)
@given(specs())
def test_to_dict_round_trips_through_parse_spec(data: dict[str, Any]) -> None:
    spec = parse(data, providers=PROVIDERS, channels=CHANNELS, default_timezone="Europe/Paris")
    stored = spec.to_dict()
    reloaded = parse(json.loads(json.dumps(stored)), default_timezone="UTC")
    assert reloaded == spec
    assert reloaded.to_dict() == stored
    assert spec.summary()["id"] == spec.id


# ---------------------------------------------------------------- the operator guide


def toml_blocks(path: Path) -> list[str]:
    text = path.read_text()
    return [block.split("```", 1)[0] for block in text.split("```toml\n")[1:]]


def test_docs_examples_are_valid() -> None:
    docs = Path(__file__).parents[2] / "docs" / "campaigns.md"
    blocks = toml_blocks(docs)
    complete = [block for block in blocks if block.startswith("id = ")]
    assert complete, "docs/campaigns.md has a complete example"
    for block in complete:
        load_spec(block, "toml", providers=PROVIDERS, channels=CHANNELS)
    triggers = [block for block in blocks if block.startswith("[trigger]")]
    assert len(triggers) == 3
    for block in triggers:
        text = 'id = "t"\nname = "T"\nkind = "live_action"\n' + block
        text += '[reward]\nprovider = "wallet_points"\namount = "1"\n'
        assert load_spec(text, "toml").trigger is not None
    segment = next(block for block in blocks if block.startswith("[segment]"))
    text = 'id = "t"\nname = "T"\nkind = "past_behavior"\n' + segment
    text += '[reward]\nprovider = "wallet_points"\namount = "1"\n'
    assert load_spec(text, "toml").segment is not None


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("toml", "x = " + "[" * 100_000 + "]" * 100_000),
        ("json", "[" * 100_000 + "]" * 100_000),
    ],
)
def test_deeply_nested_spec_is_a_clean_error(fmt: Any, text: str) -> None:
    with pytest.raises(SpecError, match="nested too deeply"):
        load_spec(text, fmt)


def test_json_spec_with_a_lone_surrogate_is_refused_naming_the_field() -> None:
    with pytest.raises(SpecError) as info:
        load_spec('{"id": "x", "name": "bad \\udc00 name"}', "json")
    assert "name" in str(info.value)
    assert "lone surrogate" in str(info.value)
