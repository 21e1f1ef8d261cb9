"""Reading request bodies: size-limited (also when chunked) and parsed as exact JSON.

``[http] max_body`` is read on each request (a reload applies at once). A declared
``Content-Length`` above it is refused before anything is read; a chunked body is
counted as it streams and refused once it passes the limit. JSON fractions become
``Decimal`` (never float) so money and properties stay exact::

    data = await read_json(request, app.config.http.max_body)   # a dict, or ApiError
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from starlette.requests import ClientDisconnect, Request

from promod.http.errors import ApiError

__all__ = ["read_body", "read_json"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"the request body is larger than {limit} bytes ([http] max_body)",
        {"max_body": limit},
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", "Content-Length is not a number") from None
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
        raise ApiError(400, "bad_request", "the client went away mid-body") from None
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object (``Content-Type`` must be JSON when given)."""
    content_type = request.headers.get("content-type", "application/json")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"expected application/json, got {media!r}")
    raw = await read_body(request, limit)
    try:
        value = _DECODER.decode(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "bad_request", "the body is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "bad_request", f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    return value
