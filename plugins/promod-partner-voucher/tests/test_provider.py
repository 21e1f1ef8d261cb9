"""PartnerVoucherProvider against a real local HTTP server playing the partner."""

from __future__ import annotations

import time
from email.utils import formatdate

import anyio
import pytest
from promod_partner_voucher.provider import PartnerVoucherProvider, settings_from
from promod_partner_voucher.testing import FakePartner, Fault

from promod.plugins.host import PluginHost
from promod.rewards.provider import (
    OutOfInventory,
    RewardProvider,
    RewardRejected,
    TemporaryFailure,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def provider(environ: dict[str, str]) -> PartnerVoucherProvider:
    return PartnerVoucherProvider(environ=environ)


async def test_issue_mints_a_voucher_keyed_by_the_grant_id(provider, partner, make_grant) -> None:
    reward = await provider.issue(make_grant(41, customer="alice", product="cinema-10"))
    assert reward.reference == "v_000001"
    assert reward.code and reward.code.startswith("PV-")
    assert reward.expires_at is not None and reward.expires_at > time.time() + 29 * 86400
    [voucher] = partner.issued()
    assert voucher.key == "41"
    assert voucher.code == reward.code
    assert (voucher.customer_ref, voucher.product, voucher.campaign) == (
        "alice",
        "cinema-10",
        "cinema",
    )
    assert (voucher.value, voucher.currency, voucher.amount) == ("10.00", "EUR", None)
    assert isinstance(provider, RewardProvider)


async def test_a_replayed_grant_gets_the_same_voucher(provider, partner, make_grant) -> None:
    first = await provider.issue(make_grant(7))
    again = await provider.issue(make_grant(7))
    assert again == first
    assert partner.minted_per_key() == {"7": 1}
    assert [s.status for s in partner.seen("POST", "/v1/vouchers")] == [201, 200]


async def test_concurrent_retries_of_one_grant_mint_once(provider, partner, make_grant) -> None:
    results = []

    async def issue() -> None:
        results.append(await provider.issue(make_grant(9)))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(issue)
    assert len({r.reference for r in results}) == 1
    assert partner.minted_per_key() == {"9": 1}


async def test_key_prefix_namespaces_the_idempotency_key(provider, partner, make_grant) -> None:
    await provider.issue(make_grant(3, key_prefix="shop-a:"))
    assert partner.minted_per_key() == {"shop-a:3": 1}


async def test_a_lost_answer_is_recovered_by_the_retry(provider, partner, make_grant) -> None:
    partner.fail_next(1, 500, after_mint=True)  # minted, then the answer is a 500
    with pytest.raises(TemporaryFailure):
        await provider.issue(make_grant(5))
    reward = await provider.issue(make_grant(5))
    assert reward.reference == "v_000001"
    assert partner.minted_per_key() == {"5": 1}


async def test_a_slow_answer_times_out_and_the_retry_gets_the_voucher(
    provider, partner, make_grant
) -> None:
    partner.slow_next(seconds=3)
    started = time.monotonic()
    with pytest.raises(TemporaryFailure, match=r"within 0\.3s"):
        await provider.issue(make_grant(11, timeout="300ms"))
    assert time.monotonic() - started < 1.5
    reward = await provider.issue(make_grant(11, timeout="300ms"))
    assert reward.reference == "v_000001"
    assert partner.minted_per_key() == {"11": 1}


async def test_429_retry_after_seconds(provider, partner, make_grant) -> None:
    partner.fail_next(1, 429, retry_after=7)
    with pytest.raises(TemporaryFailure) as info:
        await provider.issue(make_grant())
    assert info.value.retry_after == 7.0
    assert partner.minted_per_key() == {}
    assert (await provider.issue(make_grant())).reference == "v_000001"


async def test_429_retry_after_http_date(provider, partner, make_grant) -> None:
    partner.fail_next(1, 429, retry_after=formatdate(time.time() + 60, usegmt=True))
    with pytest.raises(TemporaryFailure) as info:
        await provider.issue(make_grant())
    assert info.value.retry_after is not None and 55 <= info.value.retry_after <= 61


async def test_500s_are_temporary_then_it_works(provider, partner, make_grant) -> None:
    partner.fail_next(2, 500)
    partner.fail_next(1, 503, retry_after=2)
    outcomes = []
    for _ in range(3):
        with pytest.raises(TemporaryFailure) as info:
            await provider.issue(make_grant(20))
        outcomes.append(info.value.retry_after)
    assert outcomes == [None, None, 2.0]
    assert (await provider.issue(make_grant(20))).reference == "v_000001"
    assert partner.minted_per_key() == {"20": 1}


async def test_out_of_stock(provider, partner, make_grant) -> None:
    partner.stock = 1
    reward = await provider.issue(make_grant(1))
    assert reward.details == {"remaining": 0}
    with pytest.raises(OutOfInventory):
        await provider.issue(make_grant(2, customer="c2"))
    # A replay of a key that was issued still answers its voucher.
    assert (await provider.issue(make_grant(1))).reference == reward.reference


async def test_rejected_customer(provider, partner, make_grant) -> None:
    partner.reject_customers.add("mallory")
    with pytest.raises(RewardRejected, match="customer not eligible"):
        await provider.issue(make_grant(1, customer="mallory"))
    assert partner.minted_per_key() == {}


async def test_same_key_with_another_request_is_rejected(provider, partner, make_grant) -> None:
    await provider.issue(make_grant(1, customer="a"))
    with pytest.raises(RewardRejected, match="Idempotency-Key"):
        await provider.issue(make_grant(1, customer="b"))


async def test_a_wrong_api_key_is_temporary_so_the_circuit_can_open(partner, make_grant) -> None:
    provider = PartnerVoucherProvider(environ={"TEST_PARTNER_KEY": "wrong-secret-xyz"})
    with pytest.raises(TemporaryFailure) as info:
        await provider.issue(make_grant())
    assert "401" in str(info.value)
    assert "wrong-secret-xyz" not in str(info.value)


async def test_partner_down_is_temporary(make_grant) -> None:
    with FakePartner() as gone:
        url = gone.url
    provider = PartnerVoucherProvider(environ={})
    with pytest.raises(TemporaryFailure, match="unreachable"):
        await provider.issue(make_grant(base_url=url, api_key_env=None))


async def test_garbage_answers_are_temporary(provider, partner, make_grant) -> None:
    partner.add_faults(
        Fault(status=200, body={"id": 42}),
        Fault(status=201, body={"id": "v1", "code": "X", "expires_at": "tomorrow"}),
        Fault(status=302),
    )
    for match in ("malformed", "malformed", "unexpected answer 302"):
        with pytest.raises(TemporaryFailure, match=match):
            await provider.issue(make_grant())
    assert partner.minted_per_key() == {}


async def test_revoke_by_reference_and_by_idempotency_key(provider, partner, make_grant) -> None:
    a = await provider.issue(make_grant(1, customer="a"))
    await provider.issue(make_grant(2, customer="b"))
    await provider.revoke(make_grant(1, customer="a"), a.reference)
    await provider.revoke(make_grant(2, customer="b"), None)  # answer lost: found by key
    assert partner.issued() == []
    await provider.revoke(make_grant(1, customer="a"), a.reference)  # again: still fine
    await provider.revoke(make_grant(3), None)  # never minted: nothing to do
    await provider.revoke(make_grant(4), "v_999999")  # unknown to the partner
    assert {s.path for s in partner.seen("POST")} >= {"/v1/vouchers/v_000001/revoke"}


async def test_revoke_failures(provider, partner, make_grant) -> None:
    reward = await provider.issue(make_grant(1))
    partner.fail_next(1, 502, on="revoke")
    with pytest.raises(TemporaryFailure):
        await provider.revoke(make_grant(1), reward.reference)
    assert reward.reference is not None
    partner.redeem(reward.reference)
    with pytest.raises(RewardRejected, match="redeemed"):
        await provider.revoke(make_grant(1), reward.reference)


async def test_inventory(provider, partner, make_grant) -> None:
    options = dict(make_grant().options)
    assert await provider.inventory(options) is None  # unlimited: the partner does not say
    partner.stock = 3
    assert await provider.inventory(options) == 3
    await provider.issue(make_grant(1))
    partner.fail_next(1, 500, on="inventory")
    assert await provider.inventory(options) == 2  # down: what the last mint reported
    assert await provider.inventory(options) == 2


async def test_options_are_checked(partner, environ, monkeypatch) -> None:
    provider = PartnerVoucherProvider(environ=environ)
    assert provider.validate_options({"base_url": partner.url}) == []
    problems = provider.validate_options(
        {"base_url": "ftp://x", "api_key_env": "NOPE", "timeout": "soon", "colour": "red"}
    )
    assert sorted(p.split(":")[0] for p in problems) == [
        "options.api_key_env",
        "options.base_url",
        "options.colour",
        "options.timeout",
    ]
    assert provider.validate_options({}) == [
        "options.base_url: required (or set $PARTNER_VOUCHER_BASE_URL)"
    ]
    env = {"PARTNER_VOUCHER_BASE_URL": partner.url + "/", "PARTNER_VOUCHER_API_KEY": "k"}
    settings = settings_from({"code": "IGNORED"}, env)
    assert settings.base_url == partner.url
    assert settings.timeout == 10.0
    assert "k" not in repr(settings).replace("key", "")


async def test_unusable_options_reject_the_grant(make_grant) -> None:
    provider = PartnerVoucherProvider(environ={})
    with pytest.raises(RewardRejected, match="base_url"):
        await provider.issue(make_grant(base_url="not a url"))


def test_the_entry_point_registers_the_provider() -> None:
    host = PluginHost.load(builtins=())
    assert isinstance(host.reward_providers["partner_voucher"], PartnerVoucherProvider)
    info = {p["name"]: p for p in host.describe()}["partner_voucher"]
    assert info["source"] == "entrypoint"
    assert info["registers"] == ["provider:partner_voucher"]
