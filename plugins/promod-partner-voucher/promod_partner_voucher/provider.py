"""The ``partner_voucher`` reward provider: mints vouchers at a partner's HTTP API.

Settings come from the campaign's ``[reward.options]`` (``grant.options``), with
the environment as fallback for what should not live in a campaign spec::

    [reward]
    provider = "partner_voucher"
    value = "10.00"
    currency = "EUR"
    options = { base_url = "https://vouchers.partner.example", product = "cinema-10",
                api_key_env = "CINEMA_PARTNER_KEY", timeout = "5s" }

The partner API (``promod_partner_voucher.testing.FakePartner`` plays it in tests):

- ``POST /v1/vouchers`` with ``Idempotency-Key: <grant id>`` and a JSON body
  ``{product, customer_ref, campaign, amount, value, currency}`` → 201 (or 200 for a
  replay of the same key) ``{id, code, expires_at, remaining}``; 409
  ``{"error": "out_of_stock"}``; 422 ``{"error": "rejected", "message"}``; 429 with
  ``Retry-After``; 5xx when it is down.
- ``GET /v1/vouchers?idempotency_key=K`` → the voucher minted for K, or 404.
- ``POST /v1/vouchers/{id}/revoke`` → 200; 404 unknown; 409 ``already_redeemed``.
- ``GET /v1/inventory?product=P`` → ``{"remaining": n | null}``.

Every call is bounded by ``timeout`` (connect, send and read together).
"""

from __future__ import annotations

import email.utils
import functools
import math
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import httpx
from pydantic import Field, ValidationError, ValidationInfo

from promod.campaigns.spec import currency_exponent
from promod.logs import get_logger
from promod.rewards.provider import (
    GrantRequest,
    IssuedReward,
    OutOfInventory,
    RewardRejected,
    TemporaryFailure,
)
from promod.schema import (
    SPEC_WORDS,
    Check,
    EnvName,
    HttpUrlText,
    Invalid,
    Model,
    Problems,
    issues_of,
)
from promod.units import format_money, parse_duration

log = get_logger("promod_partner_voucher")

NAME = "partner_voucher"
DEFAULT_API_KEY_ENV = "PARTNER_VOUCHER_API_KEY"
BASE_URL_ENV = "PARTNER_VOUCHER_BASE_URL"
DEFAULT_TIMEOUT = 10.0
OPTION_KEYS = frozenset({"base_url", "api_key_env", "product", "timeout", "key_prefix"})


@dataclass(frozen=True)
class PartnerSettings:
    """The resolved settings of one call. ``api_key`` is never logged nor shown."""

    base_url: str
    api_key: str | None
    product: str | None
    timeout: float
    key_prefix: str

    def __repr__(self) -> str:
        key = "set" if self.api_key else "unset"
        return (
            f"PartnerSettings(base_url={self.base_url!r}, api_key=<{key}>, "
            f"product={self.product!r}, timeout={self.timeout!r})"
        )


def _timeout(value: Any) -> float:
    if isinstance(value, bool):
        raise Invalid('must be a duration like "5s"')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
    else:
        raise Invalid('must be a duration like "5s"')
    if not math.isfinite(seconds) or seconds <= 0 or seconds > 300:
        raise Invalid("must be more than 0 and at most 5m")
    return seconds


class PartnerOptions(Model):
    """``reward.options`` of a partner_voucher reward (the environment fills in the rest)."""

    base_url: HttpUrlText | None = Field(
        default=None, description=f"the partner API; default ${BASE_URL_ENV}"
    )
    api_key_env: EnvName | None = Field(
        default=None, description=f"variable holding the API key; default {DEFAULT_API_KEY_ENV}"
    )
    product: Annotated[str, Field(strict=True)] | None = None
    timeout: Annotated[
        float, Check(_timeout, {"type": "string", "examples": ["5s"], "default": "10s"})
    ] = DEFAULT_TIMEOUT
    key_prefix: Annotated[str, Field(strict=True)] = ""

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: PartnerOptions | None, info: ValidationInfo
    ) -> Problems:
        environ = _environ_of(info)
        found: Problems = []
        if "base_url" not in raw and not environ.get(BASE_URL_ENV):
            found.append((("base_url",), f"required (or set ${BASE_URL_ENV})"))
        key_env = raw.get("api_key_env")
        if isinstance(key_env, str) and key_env and key_env not in environ:
            found.append((("api_key_env",), f"${key_env} is not set"))
        return found


class PartnerRewardOptions(Model):
    """The keys of a partner_voucher ``[reward]`` table besides provider, amount and value."""

    options: PartnerOptions = Field(default_factory=dict, validate_default=True)  # type: ignore[arg-type]


def _environ_of(info: ValidationInfo) -> Mapping[str, str]:
    context = info.context or {}
    if "environ" in context:
        return context["environ"]  # type: ignore[no-any-return]
    plugin = context.get("plugin")
    return getattr(plugin, "environ", os.environ)


def option_problems(options: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Every problem with these options, as ``"options.KEY: message"``; [] when usable."""
    try:
        PartnerOptions.model_validate(dict(options), context={"environ": environ})
    except ValidationError as exc:
        return [f"options.{path}: {message}" for path, message in issues_of(exc, SPEC_WORDS)]
    return []


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every call (building one per client is slow)."""
    return ssl.create_default_context()


def settings_from(options: Mapping[str, Any], environ: Mapping[str, str]) -> PartnerSettings:
    """Resolve the options of a grant; a campaign with unusable options is refused."""
    own = {k: v for k, v in options.items() if k in OPTION_KEYS}
    try:
        checked = PartnerOptions.model_validate(own, context={"environ": environ})
    except ValidationError as exc:
        problems = [f"options.{path}: {message}" for path, message in issues_of(exc, SPEC_WORDS)]
        raise RewardRejected(f"{NAME}: " + "; ".join(problems)) from None
    key_env = checked.api_key_env or DEFAULT_API_KEY_ENV
    return PartnerSettings(
        base_url=str(checked.base_url or environ.get(BASE_URL_ENV)).rstrip("/"),
        api_key=environ.get(key_env) or None,
        product=checked.product,
        timeout=checked.timeout,
        key_prefix=checked.key_prefix,
    )


def retry_after(response: httpx.Response, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """The partner's ``error`` and ``message`` fields, or the status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return str(body.get("error") or ""), str(body.get("message") or body.get("error") or "")
    return "", f"HTTP {response.status_code}"


def _expiry(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        from datetime import datetime

        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError("expires_at without a time zone")
        return parsed.timestamp()
    raise ValueError("expires_at is neither a number nor an ISO-8601 time")


class PartnerVoucherProvider:
    """A non-transactional reward provider, idempotent on ``grant.id``."""

    name = NAME
    transactional = False
    options_model = PartnerRewardOptions

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._environ = environ
        self._transport = transport
        # Remaining stock the partner last told us, per (base_url, product).
        self._remaining: dict[tuple[str, str | None], int | None] = {}

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def validate_options(self, options: Mapping[str, Any]) -> list[str]:
        """Problems with a campaign's ``reward.options``, as ``"options.KEY: message"``.

        ``campaign apply`` checks the same through :attr:`options_model`.
        """
        return option_problems(options, self.environ)

    def idempotency_key(self, grant: GrantRequest, settings: PartnerSettings) -> str:
        return f"{settings.key_prefix}{grant.id}"

    # -- the provider protocol ----------------------------------------------------

    async def issue(self, grant: GrantRequest) -> IssuedReward:
        settings = settings_from(grant.options, self.environ)
        key = self.idempotency_key(grant, settings)
        body = {
            "product": settings.product,
            "customer_ref": grant.customer_id,
            "campaign": grant.campaign_id,
            "amount": None
            if grant.amount_minor is None
            else format_money(grant.amount_minor, grant.amount_exponent),
            "value": format_money(grant.value_minor, currency_exponent(grant.currency)),
            "currency": grant.currency,
        }
        response = await self._request(
            settings, "POST", "/v1/vouchers", json=body, headers={"Idempotency-Key": key}
        )
        if response.status_code in (200, 201):
            reward = self._issued(response, settings)
            log.info(
                "partner_voucher.issued",
                grant=grant.id,
                reference=reward.reference,
                replay=response.status_code == 200,
            )
            return reward
        error, message = _error_of(response)
        if response.status_code == 409 and error == "out_of_stock":
            self._remaining[(settings.base_url, settings.product)] = 0
            raise OutOfInventory(f"{NAME}: partner is out of stock: {message}")
        raise self._failure(response, error, message)

    async def revoke(self, grant: GrantRequest, reference: str | None) -> None:
        """Cancel the voucher; one the partner never minted or already dropped is done."""
        settings = settings_from(grant.options, self.environ)
        if reference is None:
            key = self.idempotency_key(grant, settings)
            found = await self._request(
                settings, "GET", "/v1/vouchers", params={"idempotency_key": key}
            )
            if found.status_code == 404:
                return  # never minted: nothing to take back
            if found.status_code != 200:
                error, message = _error_of(found)
                raise self._failure(found, error, message)
            reference = self._field(found, "id")
        response = await self._request(settings, "POST", f"/v1/vouchers/{reference}/revoke")
        if response.status_code in (200, 204):
            log.info("partner_voucher.revoked", grant=grant.id, reference=reference)
            return
        error, message = _error_of(response)
        if response.status_code == 404:
            log.warning("partner_voucher.revoke_unknown", grant=grant.id, reference=reference)
            return
        raise self._failure(response, error, message)

    async def inventory(self, options: Mapping[str, Any] | None = None) -> int | None:
        """Vouchers the partner still has for these options; None when it does not say.

        Asks the partner; when it cannot be reached, answers what the last mint
        reported (or None). Never raises for a partner that is down.
        """
        settings = settings_from(options or {}, self.environ)
        where = (settings.base_url, settings.product)
        params = {"product": settings.product} if settings.product else {}
        try:
            response = await self._request(settings, "GET", "/v1/inventory", params=params)
        except TemporaryFailure as exc:
            log.warning("partner_voucher.inventory_failed", error=str(exc))
            return self._remaining.get(where)
        if response.status_code != 200:
            log.warning("partner_voucher.inventory_failed", status=response.status_code)
            return self._remaining.get(where)
        try:
            remaining = _count(response.json().get("remaining"))
        except (ValueError, AttributeError):
            return self._remaining.get(where)
        self._remaining[where] = remaining
        return remaining

    # -- HTTP -----------------------------------------------------------------------

    async def _request(
        self, settings: PartnerSettings, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        try:
            with anyio.fail_after(settings.timeout):
                async with httpx.AsyncClient(
                    base_url=settings.base_url,
                    timeout=settings.timeout,
                    transport=self._transport,
                    verify=_tls(),
                    follow_redirects=False,
                ) as client:
                    return await client.request(method, path, headers=headers, **kwargs)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise TemporaryFailure(
                f"{NAME}: no answer from the partner within {settings.timeout:g}s"
            ) from exc
        except httpx.HTTPError as exc:
            raise TemporaryFailure(f"{NAME}: partner unreachable: {type(exc).__name__}") from exc

    def _issued(self, response: httpx.Response, settings: PartnerSettings) -> IssuedReward:
        try:
            body = response.json()
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
            reference = body["id"]
            code = body["code"]
            if not isinstance(reference, str) or not reference:
                raise ValueError("id is not a string")
            if not isinstance(code, str) or not code:
                raise ValueError("code is not a string")
            expires_at = _expiry(body.get("expires_at"))
            remaining = _count(body.get("remaining"))
        except (ValueError, KeyError) as exc:
            # The partner may well have minted it: a retry with the same key gets it back.
            raise TemporaryFailure(f"{NAME}: malformed answer from the partner ({exc})") from exc
        details: dict[str, Any] = {}
        if remaining is not None:
            self._remaining[(settings.base_url, settings.product)] = remaining
            details["remaining"] = remaining
        return IssuedReward(reference=reference, code=code, expires_at=expires_at, details=details)

    def _field(self, response: httpx.Response, name: str) -> str:
        try:
            value = response.json()[name]
        except (ValueError, KeyError, TypeError) as exc:
            raise TemporaryFailure(f"{NAME}: malformed answer from the partner") from exc
        if not isinstance(value, str) or not value:
            raise TemporaryFailure(f"{NAME}: malformed answer from the partner")
        return value

    def _failure(self, response: httpx.Response, error: str, message: str) -> Exception:
        status = response.status_code
        if status == 429 or status == 408 or status >= 500:
            return TemporaryFailure(
                f"{NAME}: partner answered {status}: {message}", retry_after=retry_after(response)
            )
        if status in (401, 403):
            # Every call will fail the same way until the key is fixed: let the circuit open.
            return TemporaryFailure(f"{NAME}: partner refused the API key ({status})")
        if 400 <= status < 500:
            if error == "already_redeemed":
                return RewardRejected(f"{NAME}: voucher already redeemed, cannot revoke")
            return RewardRejected(f"{NAME}: partner rejected the voucher ({status}): {message}")
        return TemporaryFailure(f"{NAME}: unexpected answer {status} from the partner")


def _count(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("remaining is not a count")
    return value
