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

import ipaddress
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from promod.customers.records import MAX_ID_LENGTH
from promod.http.auth import authorize
from promod.http.body import read_json
from promod.http.clientip import client_address
from promod.http.errors import ApiError
from promod.logs import get_logger

if TYPE_CHECKING:
    from promod.app import App

__all__ = ["MAX_CODE_LENGTH", "RedeemFunction", "redemption_routes"]

log = get_logger("promod.http")

MAX_CODE_LENGTH = 128
_KEYS = ("code", "customer_id", "ip")

RedeemFunction = Callable[..., Awaitable[Any]]


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        422,
        "invalid",
        f"{field}: {message}",
        {"errors": [{"path": field, "field": field, "message": message}]},
    )


def _text(data: dict[str, Any], field: str, limit: int) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value.strip():
        raise _invalid(field, "must be a non-empty string")
    if len(value) > limit or value != value.strip() or not value.isprintable():
        raise _invalid(field, f"must be at most {limit} printable characters, no outer spaces")
    return value


def parse_redemption(data: dict[str, Any]) -> tuple[str, str, str]:
    """(code, customer_id, ip) of a valid body; ApiError 422 otherwise."""
    for key in data:
        if key not in _KEYS:
            raise _invalid(key, f"unknown key (expected {', '.join(_KEYS)})")
    code = _text(data, "code", MAX_CODE_LENGTH)
    customer_id = _text(data, "customer_id", MAX_ID_LENGTH)
    raw_ip = _text(data, "ip", 64)
    try:
        ip = str(ipaddress.ip_address(raw_ip))
    except ValueError:
        raise _invalid("ip", "is not an IP address") from None
    return code, customer_id, ip


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


def redemption_routes(app: App) -> list[Route]:
    """The redemption route over :func:`promod.codepool.redeem.redeem`.

    ``app.redeem``, when set, is called instead with the same arguments
    ``(app, code, customer_id, ip, fraud_config, now)``.
    """

    async def redeem(request: Request) -> JSONResponse:
        cfg = app.config.http
        authorize(request, cfg.tokens, "redeem")
        data = await read_json(request, cfg.max_body)
        code, customer_id, ip = parse_redemption(data)
        function = app.redeem or _default_redeem()
        result = await function(app, code, customer_id, ip, app.config.fraud, app.clock.now())
        redeemed, reason = _outcome(result)
        log.info(
            "redemption",
            customer=customer_id,
            ip=ip,
            client=client_address(request, cfg.trusted_proxies),
            redeemed=redeemed,
            reason=reason,
        )
        return JSONResponse({"redeemed": redeemed, "reason": reason})

    return [Route("/v1/redemptions", redeem, methods=["POST"])]
