"""The shared model base and value types (promod.schema): what files give and what code gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from promod.config import ConfigError, FraudConfig, ProviderBudget, parse_config


def test_code_may_build_a_section_from_seconds_and_minor_units() -> None:
    assert FraudConfig(block_for=60.0).block_for == 60.0
    assert ProviderBudget(lifetime=500).lifetime == 500


def test_a_file_must_write_durations_and_money_as_strings() -> None:
    data = {
        "fraud": {"block_for": 60},
        "policy": {"budgets": {"coupon": {"EUR": {"lifetime": 500}}}},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, Path("/etc/promod/promod.toml"))
    found = {issue.path: issue.message for issue in caught.value.issues}
    assert found == {
        "fraud.block_for": 'expected a duration string such as "30s", got integer',
        "policy.budgets.coupon.EUR.lifetime": (
            'money must be a decimal string such as "5.00", got integer'
        ),
    }
