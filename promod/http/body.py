"""Reading request bodies: size-limited (also when chunked) and parsed as exact JSON.

Every API route is an :class:`ApiRoute`. Before FastAPI reads anything, it checks
the route's bearer-token scope (so an unauthorised client learns nothing about its
body), then the media type. A query parameter the operation does not declare is a 422.
The body is read through :class:`ApiRequest`:
``[http] max_body`` is read on each request (a reload applies at once); a declared
``Content-Length`` above it is refused before anything is read, a chunked body is
counted as it streams. JSON fractions become ``Decimal`` (never float) so money and
properties stay exact, and text with a lone surrogate is refused (400) naming its key
path, so it never reaches a model, the store or a log line::

    router = APIRouter(route_class=ApiRoute)
    @router.post("/v1/events", openapi_extra=scope("events:write"))
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from promod.http.auth import authorize
from promod.http.errors import ApiError
from promod.surrogates import SURROGATE_MESSAGE, find_surrogate, has_surrogate

__all__ = ["SCOPE_KEY", "ApiRequest", "ApiRoute", "decode_json", "read_body", "scope"]

SCOPE_KEY = "x-promod-scope"


def scope(name: str, **extra: Any) -> dict[str, Any]:
    """``openapi_extra`` of a route that needs the token scope ``name``."""
    return {SCOPE_KEY: name, **extra}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)
# UTF-8 holds no surrogates: decoded JSON has one only from a \uD800-\uDFFF escape, so a
# body without such an escape needs no walk of its decoded value.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"the request body is larger than {limit} bytes ([http] max_body)",
        {"max_body": limit},
    )


def _bad_request(message: str, path: str | None = None) -> ApiError:
    details = None if path is None else {"errors": [{"path": path, "message": message}]}
    return ApiError(400, "bad_request", message, details)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise _bad_request("Content-Length is not a number") from None
        if length > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise _bad_request("the client went away mid-body") from None
    return b"".join(chunks)


def decode_json(raw: bytes) -> Any:
    """A JSON body: exact decimals, no NaN, no lone surrogates (ApiError 400 otherwise)."""
    try:
        text = raw.decode("utf-8")
        value = _DECODER.decode(text)
    except UnicodeDecodeError:
        raise _bad_request("the body is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise _bad_request(f"invalid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(text) is None:
        return value
    where = find_surrogate(value)
    if where is not None:
        raise _bad_request(f"{where}: {SURROGATE_MESSAGE}", where)
    return value


def _limit(request: Request) -> int:
    limit: int = request.app.state.promod.config.http.max_body
    return limit


class ApiRequest(Request):
    """A request whose body is size-limited and whose JSON is exact."""

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            self._body = await read_body(self, _limit(self))
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = decode_json(await self.body())
        return self._json


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and "+json" in media)


def _refuse_surrogates(request: Request) -> None:
    """A path or query parameter with a lone surrogate is a 400 naming it.

    HTTP servers decode percent-escapes that are not UTF-8 to U+FFFD, but an ASGI
    server may hand over anything; nothing with a surrogate goes further.
    """
    for where, params in (("path", request.path_params), ("query", request.query_params)):
        for name, value in params.items():
            if has_surrogate(name) or has_surrogate(value):
                field = f"{where}.{ascii(name)[1:-1]}"
                raise _bad_request(f"{field}: {SURROGATE_MESSAGE}", field)


def _refuse_unknown_query(request: Request, known: frozenset[str]) -> None:
    """A query parameter the operation does not declare is a 422 naming it."""
    unknown = sorted(name for name in request.query_params if name not in known)
    if unknown:
        errors = [
            {"path": f"query.{n}", "loc": ["query", n], "field": n, "message": "unknown"}
            for n in unknown
        ]
        raise ApiError(
            422,
            "invalid",
            f"unknown query parameter {unknown[0]!r}"
            f" (expected {', '.join(sorted(known)) or 'none'})",
            {"errors": errors, "error_count": len(errors)},
        )


class ApiRoute(APIRoute):
    """A route that checks its token scope, then its media type, before the body is read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        needed: str | None = (self.openapi_extra or {}).get(SCOPE_KEY)
        wants_json = self.body_field is not None
        known_query = frozenset(p.alias for p in self.dependant.query_params)

        async def route_handler(request: Request) -> Response:
            _refuse_surrogates(request)
            _refuse_unknown_query(request, known_query)
            if needed is not None:
                authorize(request, request.app.state.promod.config.http.tokens, needed)
            if wants_json:
                content_type = request.headers.get("content-type")
                if content_type is None:
                    # No media type: read as JSON (what curl -d and most clients mean).
                    scope = dict(request.scope)
                    scope["headers"] = [
                        *request.scope["headers"],
                        (b"content-type", b"application/json"),
                    ]
                    request = Request(scope, request.receive)
                elif not _is_json(content_type):
                    media = content_type.split(";", 1)[0].strip().lower()
                    raise ApiError(
                        415, "unsupported_media_type", f"expected application/json, got {media!r}"
                    )
            return await handler(ApiRequest(request.scope, request.receive))

        return route_handler
