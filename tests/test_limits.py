"""The descriptor budget and the rate limit of the accept-error log line."""

from __future__ import annotations

import logging

import pytest

from promod.limits import AcceptErrorFilter, DescriptorBudget


@pytest.mark.parametrize("nofile", [256, 1024, 65536])
def test_the_budget_leaves_a_reserve_below_the_limit(nofile: int) -> None:
    budget = DescriptorBudget.for_limit(nofile, http_max=1_000_000)
    used = budget.http_connections + budget.admin_connections + budget.accept_backlog
    assert used + budget.reserve <= nofile
    assert budget.reserve >= 96
    assert budget.admin_connections >= 1


def test_the_configured_http_maximum_caps_the_share() -> None:
    assert DescriptorBudget.for_limit(65536, http_max=500).http_connections == 500


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, (), None)


def test_accept_errors_are_let_through_once_per_interval_with_the_count() -> None:
    flt = AcceptErrorFilter(interval=3600)
    text = "socket.accept() out of system resource"
    assert flt.filter(record(text))
    assert not any(flt.filter(record(text)) for _ in range(70_000))
    assert flt.suppressed == 70_000
    assert flt.filter(record("another asyncio error"))  # other records pass untouched
    flt.interval = 0
    later = record(text)
    assert flt.filter(later)
    assert "70000 more since the last report" in later.getMessage()
