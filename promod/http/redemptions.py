"""``POST /v1/redemptions``: redeem a code for a customer over the code pool's redemption.

The body is ``{"code", "customer_id", "ip"}``; ``ip`` is the end customer's address
as the site's backend saw it, and is what the fraud limits count (the connecting
client is the backend itself; its address — ``X-Forwarded-For`` believed only from
``[http] trusted_proxies`` — is only logged). The answer is always
``{"redeemed": bool, "reason": str|null}`` with 200: a refused redemption is an answer,
not an error, and never says whether a code exists for someone else::

    POST /v1/redemptions  {"code": "XMAS-7KQ2-M9TZ", "customer_id": "c42", "ip": "203.0.113.7"}
    -> {"redeemed": true, "reason": null}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

from promod.customers.records import Identifier, Name
from promod.http.body import ApiRoute, scope
from promod.http.clientip import client_address
from promod.http.errors import ApiError, error_responses
from promod.logs import get_logger

__all__ = ["RedeemFunction", "Redemption", "redemption_router"]

log = get_logger("promod.http")

RedeemFunction = Callable[..., Awaitable[Any]]


def _ip(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    for kind in (IPv4Address, IPv6Address):
        try:
            return str(kind(value))
        except ValueError:
            continue
    raise ValueError("is not an IP address")


IpAddress = Annotated[
    str,
    PlainValidator(_ip),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "ipv4"},
                {"type": "string", "format": "ipv6"},
            ],
            "description": "the end customer's IP address as the site saw it",
        }
    ),
]


class Redemption(BaseModel):
    """A code to redeem for a customer, with the end customer's address."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"code": "XMAS-7KQ2-M9TZ", "customer_id": "c42", "ip": "203.0.113.7"}]
        },
    )

    code: Name = Field(description="the code as the customer typed it")
    customer_id: Identifier
    ip: IpAddress


class RedemptionResult(BaseModel):
    """Whether the code was redeemed; ``reason`` says why not."""

    redeemed: bool
    reason: str | None


def _default_redeem() -> RedeemFunction:
    try:
        from promod.codepool.redeem import redeem
    except ImportError:
        raise ApiError(503, "unavailable", "code redemption is not available") from None
    function: RedeemFunction = redeem
    return function


def _outcome(result: Any) -> tuple[bool, str | None]:
    """``(redeemed, reason)`` from the code pool's result (an object or a mapping)."""
    if isinstance(result, dict):
        redeemed, reason = result.get("redeemed"), result.get("reason")
    elif isinstance(result, tuple) and len(result) == 2:
        redeemed, reason = result
    else:
        redeemed, reason = getattr(result, "redeemed", None), getattr(result, "reason", None)
    if not isinstance(redeemed, bool):
        raise TypeError(f"redeem() returned {type(result).__name__}, not an outcome")
    return redeemed, None if redeemed or reason is None else str(reason)


def redemption_router(app: Any) -> APIRouter:
    """The redemption route over :func:`promod.codepool.redeem.redeem`.

    ``app.extras["redeem"]``, when set, is called instead with the same arguments
    ``(app, code, customer_id, ip, fraud_config, now)``.
    """
    router = APIRouter(route_class=ApiRoute, tags=["redemptions"])

    @router.post(
        "/v1/redemptions",
        operation_id="redeem",
        summary="Redeem a code for a customer",
        response_model=RedemptionResult,
        responses=error_responses(400, 401, 403, 413, 415, 422, 503),
        openapi_extra=scope("redeem"),
    )
    async def redeem(request: Request, body: Redemption) -> RedemptionResult:
        cfg = app.config.http
        function = app.extras.get("redeem") or _default_redeem()
        result = await function(
            app, body.code, body.customer_id, body.ip, app.config.fraud, app.clock.now()
        )
        redeemed, reason = _outcome(result)
        log.info(
            "redemption",
            customer=body.customer_id,
            ip=body.ip,
            client=client_address(request, cfg.trusted_proxies),
            redeemed=redeemed,
            reason=reason,
        )
        return RedemptionResult(redeemed=redeemed, reason=reason)

    return router
