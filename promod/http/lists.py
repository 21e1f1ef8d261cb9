"""``PUT /v1/lists/{name}`` and ``POST /v1/lists/{name}:add``: fill custom lists over HTTP.

The body is ``{"customer_ids": ["c1", "c2", ...]}`` (at most 100,000 ids; the body
size limit applies too). ``PUT`` replaces the list by exactly these ids (creating
it), ``:add`` adds them to it; either is one transaction through the versioned lists
of :mod:`promod.lists.store`, so a reader sees the old list or the new one, never a
mix. One invalid id refuses the call (422, every invalid id with its index), nothing
stored. Ids without a customer profile are kept and reported::

    PUT /v1/lists/vip-2026  {"customer_ids": ["c1", "c2"]}
    -> 201 {"list": "vip-2026", "version": 1, "members": 2, "added": 2, "removed": 0,
            "without_profile": 1, "without_profile_ids": ["c2"], "created": true, ...}

Scope ``customers:write``: lists are customer data.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from promod.http.auth import authorize
from promod.http.body import read_json
from promod.http.errors import ApiError
from promod.lists.store import ListError, Mode, check_member, check_name, set_members

__all__ = ["MAX_MEMBERS", "list_routes", "parse_members"]

MAX_MEMBERS = 100_000
MAX_REPORTED_ERRORS = 100
SOURCE = "api"
_KEY = "customer_ids"


def _invalid(message: str, errors: list[dict[str, Any]], **details: Any) -> ApiError:
    return ApiError(422, "invalid", message, {"errors": errors, **details})


def parse_members(data: dict[str, Any]) -> list[str]:
    """The ids of a valid body; ApiError 422 naming every bad field otherwise."""
    for key in data:
        if key != _KEY:
            raise _invalid(
                f"unknown key {key!r} (expected {_KEY!r})",
                [{"path": key, "field": key, "message": "unknown key"}],
            )
    ids = data.get(_KEY)
    if not isinstance(ids, list):
        raise _invalid(
            f"{_KEY!r} must be an array of customer ids",
            [{"path": _KEY, "field": _KEY, "message": "must be an array"}],
        )
    if len(ids) > MAX_MEMBERS:
        raise _invalid(
            f"at most {MAX_MEMBERS} ids a call, got {len(ids)}",
            [{"path": _KEY, "field": _KEY, "message": f"at most {MAX_MEMBERS} items"}],
        )
    errors: list[dict[str, Any]] = []
    error_count = 0
    for index, value in enumerate(ids):
        try:
            check_member(value)
        except ValueError as exc:
            error_count += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                path = f"{_KEY}[{index}]"
                errors.append({"path": path, "field": _KEY, "index": index, "message": str(exc)})
    if error_count:
        first = errors[0]
        raise _invalid(
            f"{error_count} invalid id{'s' if error_count != 1 else ''}, first at"
            f" {first['path']}: {first['message']}; nothing stored",
            errors,
            error_count=error_count,
        )
    return list(ids)


def _name(request: Request) -> str:
    name = request.path_params["name"]
    try:
        return check_name(name)
    except ListError as exc:
        error = {"path": "name", "field": "name", "message": exc.message}
        raise _invalid(exc.message, [error]) from None


def list_routes(app: Any) -> list[Route]:
    """The custom list routes over ``app``."""

    async def change(request: Request, mode: Mode) -> JSONResponse:
        cfg = app.config.http
        authorize(request, cfg.tokens, "customers:write")
        name = _name(request)
        data = await read_json(request, cfg.max_body)
        ids = parse_members(data)
        now = app.clock.now()

        def work(conn: Any) -> dict[str, Any]:
            existed = (
                conn.execute(
                    "SELECT 1 FROM lists WHERE name = ? AND version IS NOT NULL", (name,)
                ).fetchone()
                is not None
            )
            summary = set_members(conn, name, ids, mode=mode, source=SOURCE, now=now)
            return {**summary, "created": not existed}

        summary = await app.db.run_sync(work)
        return JSONResponse(summary, status_code=201 if summary["created"] else 200)

    async def replace(request: Request) -> JSONResponse:
        return await change(request, "replace")

    async def add(request: Request) -> JSONResponse:
        return await change(request, "add")

    return [
        Route("/v1/lists/{name}:add", add, methods=["POST"]),
        Route("/v1/lists/{name}", replace, methods=["PUT"]),
    ]
