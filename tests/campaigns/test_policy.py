"""Which policy budgets bind a campaign: refusals and warnings at apply."""

from __future__ import annotations

from promod.campaigns.policy import applied_budgets, policy_issues, policy_warnings
from promod.campaigns.spec import CampaignSpec, load_spec
from promod.config import PolicyConfig, ProviderBudget
from tests.support.data import wallet_spec

POLICY = PolicyConfig(
    budgets={
        "wallet_points": {
            "EUR": ProviderBudget(lifetime=10_000, daily=1_000),  # 100.00 / 10.00 EUR
            "JPY": ProviderBudget(daily=1_000),  # 1000 yen
        },
        "coupon": {"EUR": ProviderBudget(lifetime=500)},
    }
)


def _spec(
    caps: str = "", currency: str = "EUR", value: str = "5.00", extra: str = ""
) -> CampaignSpec:
    text = wallet_spec(caps=caps, value=value).replace(
        'currency = "EUR"', f'currency = "{currency}"\n{extra}'
    )
    return load_spec(text, "toml", providers={"wallet_points", "coupon"})


def test_a_currency_without_a_budget_where_the_provider_has_others_is_refused() -> None:
    issues = policy_issues(POLICY, _spec(currency="USD"))
    assert [i["path"] for i in issues] == ["reward.currency"]
    assert "policy budgets are in EUR, JPY only: none binds spend in USD" in issues[0]["message"]
    assert "[policy.budgets.wallet_points]" in issues[0]["message"]
    assert policy_issues(POLICY, _spec(currency="JPY", value="500")) == []
    assert policy_issues(PolicyConfig(), _spec(currency="USD")) == []


def test_the_fallbacks_provider_is_checked_in_the_campaigns_currency() -> None:
    fallback = 'fallback = { provider = "coupon", code = "SORRY", value = "1.00" }'
    spec = _spec(currency="JPY", value="500", extra=fallback.replace('"1.00"', '"100"'))
    issues = policy_issues(POLICY, spec)
    assert len(issues) == 1 and "reward.fallback uses coupon" in issues[0]["message"]
    eur = _spec(extra=fallback)
    assert [(b.provider, b.currency) for b in applied_budgets(POLICY, eur)] == [
        ("wallet_points", "EUR"),
        ("coupon", "EUR"),
    ]


def test_caps_above_the_policy_budget_that_binds_first_are_warned_about() -> None:
    warnings = policy_warnings(POLICY, _spec(caps='budget = "250.00"\ndaily_budget = "5.00"'))
    assert warnings == [
        {
            "path": "caps.budget",
            "message": "250.00 EUR is above the policy budget of wallet_points (100.00 EUR"
            " lifetime, shared by every campaign): the policy budget binds first",
        }
    ]
    # A count cap costs count x value.
    warnings = policy_warnings(POLICY, _spec(caps="count = 30\ndaily_count = 2"))
    assert [(w["path"], w["message"].split(" is above")[0]) for w in warnings] == [
        ("caps.count", "up to 150.00 EUR of rewards")
    ]
    assert policy_warnings(POLICY, _spec(caps='budget = "100.00"\ndaily_budget = "10.00"')) == []


def test_a_reward_without_value_under_a_budgeted_provider_is_warned_about() -> None:
    text = wallet_spec().replace('value = "5.00"\ncurrency = "EUR"\n', "")
    spec = load_spec(text, "toml", providers={"wallet_points"})
    assert policy_issues(POLICY, spec) == []
    assert [w["path"] for w in policy_warnings(POLICY, spec)] == ["reward.value"]


def test_a_provider_with_budgets_in_other_currencies_only_binds_to_nothing() -> None:
    # campaign apply refuses this; a config changed afterwards must not unbind it.
    (applied,) = applied_budgets(POLICY, _spec(currency="USD"))
    assert (applied.provider, applied.currency, applied.missing) == ("wallet_points", "USD", True)
    assert applied.budget == ProviderBudget(lifetime=0)
    assert applied_budgets(PolicyConfig(), _spec(currency="USD")) == []
