"""Site-wide policy budgets as they apply to one campaign: apply-time checks and report rows.

``[policy.budgets.<provider>]`` holds one budget per currency. A campaign is bound
by the budgets of its reward providers (the reward and its fallback) in its own
currency; spend in another currency never counts against them. ``campaign apply``
refuses a campaign whose currency has no budget for a provider that has budgets in
other currencies, and warns when a campaign cap is above the policy budget that
will bind it; ``campaign report`` lists the budgets that apply, with their usage::

    issues = policy_issues(config.policy, spec)     # [{"path", "message"}] -> refused
    warnings = policy_warnings(config.policy, spec)

The report's rows of those budgets, with their usage, are read by
:func:`promod.campaigns.store_report.policy_caps`.
"""

from __future__ import annotations

from dataclasses import dataclass

from promod.campaigns.spec import CampaignSpec, Reward, currency_exponent
from promod.config import PolicyConfig, ProviderBudget
from promod.units import format_money

#: What binds a campaign in a currency its provider has no budget in, while it has
#: budgets in others (a config changed after apply): nothing may be spent.
NOTHING = ProviderBudget(lifetime=0)


@dataclass(frozen=True)
class AppliedBudget:
    """One policy budget that binds a campaign: a provider's budget in its currency.

    ``missing`` marks a provider with budgets in other currencies only: then
    ``budget`` is :data:`NOTHING` and the campaign's grants are refused.
    """

    provider: str
    currency: str
    budget: ProviderBudget
    missing: bool = False


def _rewards(spec: CampaignSpec) -> list[tuple[str, Reward]]:
    rewards = [("reward", spec.reward)]
    if spec.reward.fallback is not None:
        rewards.append(("reward.fallback", spec.reward.fallback))
    return rewards


def applied_budgets(policy: PolicyConfig, spec: CampaignSpec) -> list[AppliedBudget]:
    """The policy budgets that bind ``spec``, one per provider, in its currency.

    The ledger grants under these, so they fail closed: a provider with budgets in
    other currencies only (``campaign apply`` refuses that, but the config may
    change after) binds the campaign to :data:`NOTHING`.
    """
    out: list[AppliedBudget] = []
    currency = spec.currency
    if currency is None:
        return out
    for _, reward in _rewards(spec):
        budgets = policy.budgets.get(reward.provider) or {}
        if not budgets or any(b.provider == reward.provider for b in out):
            continue
        budget = budgets.get(currency)
        if budget is None:
            out.append(AppliedBudget(reward.provider, currency, NOTHING, missing=True))
        else:
            out.append(AppliedBudget(reward.provider, currency, budget))
    return out


def policy_issues(policy: PolicyConfig, spec: CampaignSpec) -> list[dict[str, str]]:
    """Errors refusing the spec: a currency with no budget where the provider has others."""
    issues: list[dict[str, str]] = []
    currency = spec.currency
    for path, reward in _rewards(spec):
        budgets = policy.budgets.get(reward.provider) or {}
        if currency is None or not budgets or currency in budgets:
            continue
        issues.append(
            {
                "path": "reward.currency",
                "message": (
                    f"{path} uses {reward.provider}, whose policy budgets are in"
                    f" {', '.join(sorted(budgets))} only: none binds spend in {currency}."
                    f" Add {currency} = {{ lifetime = ..., daily = ... }} under"
                    f" [policy.budgets.{reward.provider}] in the config, or use one of"
                    " those currencies"
                ),
            }
        )
    return issues


def policy_warnings(policy: PolicyConfig, spec: CampaignSpec) -> list[dict[str, str]]:
    """Warnings: a campaign cap above the policy budget that binds it first."""
    warnings: list[dict[str, str]] = []
    caps = spec.caps
    exp = currency_exponent(spec.currency)

    def money(minor: int) -> str:
        return f"{format_money(minor, exp)} {spec.currency}"

    for path, reward in _rewards(spec):
        budgets = policy.budgets.get(reward.provider) or {}
        if budgets and reward.value_minor is None:
            warnings.append(
                {
                    "path": f"{path}.value",
                    "message": (
                        f"{reward.provider} has policy budgets, but a reward without a value"
                        " is not counted against them"
                    ),
                }
            )
    for applied in applied_budgets(policy, spec):
        if applied.missing:
            continue  # an error at apply (policy_issues)
        name = f"the policy budget of {applied.provider}"
        value = max(
            (r.value_minor or 0 for _, r in _rewards(spec) if r.provider == applied.provider),
            default=0,
        )
        checks: list[tuple[str, int | None, int | None, str]] = [
            ("caps.budget", caps.budget_minor, applied.budget.lifetime, "lifetime"),
            ("caps.daily_budget", caps.daily_budget_minor, applied.budget.daily, "daily"),
        ]
        if caps.budget_minor is None and caps.count is not None and value:
            checks.append(("caps.count", caps.count * value, applied.budget.lifetime, "lifetime"))
        if caps.daily_budget_minor is None and caps.daily_count is not None and value:
            checks.append(
                ("caps.daily_count", caps.daily_count * value, applied.budget.daily, "daily")
            )
        for key, cap, limit, kind in checks:
            if cap is None or limit is None or cap <= limit:
                continue
            what = money(cap) if key.endswith("budget") else f"up to {money(cap)} of rewards"
            warnings.append(
                {
                    "path": key,
                    "message": (
                        f"{what} is above {name} ({money(limit)} {kind}, shared by every"
                        " campaign): the policy budget binds first"
                    ),
                }
            )
    return warnings
