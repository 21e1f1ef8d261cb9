"""Fixtures of the partner_voucher plugin's tests: a running fake partner and grants."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from promod_partner_voucher.testing import FakePartner

from promod.rewards.provider import GrantRequest

KEY_ENV = "TEST_PARTNER_KEY"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def partner() -> Iterator[FakePartner]:
    with FakePartner(stock=None) as fake:
        yield fake


@pytest.fixture
def environ(partner: FakePartner) -> dict[str, str]:
    assert partner.api_key is not None
    return {KEY_ENV: partner.api_key}


@pytest.fixture
def make_grant(partner: FakePartner) -> Callable[..., GrantRequest]:
    def make(grant_id: int = 1, customer: str = "c1", **options: Any) -> GrantRequest:
        opts = {"base_url": partner.url, "api_key_env": KEY_ENV, "timeout": "2s", **options}
        return GrantRequest(
            id=grant_id,
            campaign_id="cinema",
            run_id=1,
            customer_id=customer,
            provider="partner_voucher",
            amount_minor=None,
            amount_exponent=0,
            value_minor=1000,
            currency="EUR",
            options=opts,
        )

    return make
