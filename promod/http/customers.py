"""Routes for customers, behaviour events and what a customer holds.

``PUT /v1/customers/{id}`` and ``POST /v1/customers:batch`` create or replace
profiles (all-or-nothing, every invalid record reported with its index and field);
``POST /v1/events`` stores a batch of events, skipping ids already stored, then hands
the new ones to the ``on_events`` hook; ``GET /v1/customers/{id}/rewards`` lists the
rewards the customer can still use (``?include=all`` or ``?state=S`` for the others:
redeemed, revoked, expired; see :mod:`promod.rewards.holdings`) and the wallet balance::

    routes = customer_routes(app)    # Starlette Routes, mounted by build_app

The ``on_events`` hook: when ``app.extras["on_events"]`` is set, it is called after
the batch has committed with the list of newly stored
:class:`promod.customers.store.StoredEvent` (``seq`` and the ``Event``), in order;
duplicates are not passed. An awaitable result is awaited before the response is
sent (so keep it short: hand the events to an actor). An exception in the hook is
logged and does not fail the request — the events are stored either way.
"""

from __future__ import annotations

import inspect
import sqlite3
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from promod.customers.records import Customer, Event, RecordError, parse_customer, parse_event
from promod.customers.store import (
    StoredEvent,
    insert_events_sync,
    upsert_customers_sync,
)
from promod.http.auth import authorize
from promod.http.body import read_json
from promod.http.errors import ApiError
from promod.logs import get_logger
from promod.rewards.holdings import REWARD_STATES, customer_rewards_sync

__all__ = ["MAX_BATCH", "MAX_REPORTED_ERRORS", "customer_routes"]

log = get_logger("promod.http")

MAX_BATCH = 10_000
MAX_REPORTED_ERRORS = 100
CONSENT_SOURCE = "api"

R = TypeVar("R", Customer, Event)


def _record_error(path: str, exc: RecordError, index: int | None = None) -> dict[str, Any]:
    where = f"{path}.{exc.field}" if exc.field else path
    out: dict[str, Any] = {"path": where, "field": exc.field, "message": exc.message}
    if index is not None:
        out["index"] = index
    return out


def _parse_batch(data: dict[str, Any], key: str, parse: Callable[[Any], R], what: str) -> list[R]:
    extra = sorted(k for k in data if k != key)
    if extra:
        raise ApiError(
            422,
            "invalid",
            f"unknown key {extra[0]!r} (expected {key!r})",
            {"errors": [{"path": extra[0], "field": extra[0], "message": "unknown key"}]},
        )
    items = data.get(key)
    if not isinstance(items, list):
        raise ApiError(
            422,
            "invalid",
            f"{key!r} must be an array of {what} records",
            {"errors": [{"path": key, "field": key, "message": "must be an array"}]},
        )
    if len(items) > MAX_BATCH:
        raise ApiError(
            422,
            "invalid",
            f"at most {MAX_BATCH} {what}s a batch, got {len(items)}",
            {"max_batch": MAX_BATCH},
        )
    records: list[R] = []
    errors: list[dict[str, Any]] = []
    error_count = 0
    for index, item in enumerate(items):
        try:
            records.append(parse(item))
        except RecordError as exc:
            error_count += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append(_record_error(f"{key}[{index}]", exc, index))
    if error_count:
        first = errors[0]
        raise ApiError(
            422,
            "invalid",
            f"{error_count} invalid {what} record{'s' if error_count != 1 else ''},"
            f" first at {first['path']}: {first['message']}; nothing stored",
            {"errors": errors, "error_count": error_count},
        )
    return records


REWARD_QUERY = ("include", "state")


def _reward_states(request: Request) -> Collection[str] | None:
    """The states asked for by ``?include=all`` or ``?state=S``; None: the usable ones."""
    params = request.query_params
    unknown = sorted(k for k in params if k not in REWARD_QUERY)
    if unknown:
        raise ApiError(
            422,
            "invalid",
            f"unknown query parameter {unknown[0]!r}",
            {"errors": [{"path": unknown[0], "field": unknown[0], "message": "unknown"}]},
        )
    include = params.get("include")
    state = params.get("state")
    if include is not None and include not in ("all", "usable"):
        raise ApiError(
            422,
            "invalid",
            "include must be all or usable",
            {"errors": [{"path": "include", "field": "include", "message": "all or usable"}]},
        )
    if state is not None:
        if state not in REWARD_STATES:
            raise ApiError(
                422,
                "invalid",
                f"state must be one of {', '.join(REWARD_STATES)}",
                {
                    "errors": [
                        {"path": "state", "field": "state", "message": "|".join(REWARD_STATES)}
                    ]
                },
            )
        if include is not None:
            raise ApiError(
                422,
                "invalid",
                "give include or state, not both",
                {"errors": [{"path": "state", "field": "state", "message": "not with include"}]},
            )
        return (state,)
    return REWARD_STATES if include == "all" else None


def _rewards_sync(
    conn: sqlite3.Connection, customer_id: str, now: float, states: Collection[str] | None
) -> dict[str, Any] | None:
    known = conn.execute("SELECT 1 FROM customers WHERE id = ?", (customer_id,)).fetchone()
    held = customer_rewards_sync(conn, customer_id, now=now, states=states)
    balance = conn.execute(
        "SELECT points FROM wallet_balances WHERE customer_id = ?", (customer_id,)
    ).fetchone()
    if known is None and not held and balance is None:
        any_grant = conn.execute(
            "SELECT 1 FROM grants WHERE customer_id = ? LIMIT 1", (customer_id,)
        ).fetchone()
        if any_grant is None:
            return None
    rewards = [
        {
            "grant_id": r.grant_id,
            "campaign_id": r.campaign_id,
            "run_id": r.run_id,
            "provider": r.provider,
            "state": r.state,
            "amount": r.amount,
            "value": r.value,
            "currency": r.currency,
            "code": r.code,
            "granted_at": _iso(r.granted_at),
            "issued_at": _iso(r.issued_at),
            "expires_at": _iso(r.expires_at),
            "redeemed_at": _iso(r.redeemed_at),
            "ended_at": _iso(r.ended_at),
        }
        for r in held
    ]
    return {
        "customer_id": customer_id,
        "rewards": rewards,
        "wallet": {"points": int(balance[0]) if balance is not None else 0},
    }


def _iso(ts: float | None) -> str | None:
    from promod.clock import utc_iso

    return None if ts is None else utc_iso(float(ts))


async def _call_hook(app: Any, stored: Sequence[StoredEvent]) -> None:
    hook = app.extras.get("on_events")
    if hook is None or not stored:
        return
    try:
        result = hook(list(stored))
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        log.error("on_events_hook_failed", error=repr(exc), events=len(stored))


def customer_routes(app: Any) -> list[Route]:
    """The customer, event and rewards routes over ``app``."""

    def http() -> Any:
        return app.config.http

    async def put_customer(request: Request) -> JSONResponse:
        authorize(request, http().tokens, "customers:write")
        customer_id = request.path_params["customer_id"]
        data = await read_json(request, http().max_body)
        if "id" in data and data["id"] != customer_id:
            raise ApiError(
                422,
                "invalid",
                "the body's id differs from the id in the path",
                {"errors": [{"path": "id", "field": "id", "message": "differs from the path"}]},
            )
        try:
            customer = parse_customer({**data, "id": customer_id})
        except RecordError as exc:
            raise ApiError(
                422, "invalid", str(exc), {"errors": [_record_error("customer", exc)]}
            ) from None
        now = app.clock.now()
        summary = await app.db.run_sync(
            lambda conn: upsert_customers_sync(conn, [customer], now=now, source=CONSENT_SOURCE)
        )
        created = bool(summary.created)
        return JSONResponse(
            {"customer": customer.to_dict(), "created": created},
            status_code=201 if created else 200,
        )

    async def batch_customers(request: Request) -> JSONResponse:
        authorize(request, http().tokens, "customers:write")
        data = await read_json(request, http().max_body)
        customers = _parse_batch(data, "customers", parse_customer, "customer")
        now = app.clock.now()
        summary = await app.db.run_sync(
            lambda conn: upsert_customers_sync(conn, customers, now=now, source=CONSENT_SOURCE)
        )
        return JSONResponse(
            {
                "upserted": len(summary.created) + len(summary.updated),
                "created": len(summary.created),
                "updated": len(summary.updated),
            }
        )

    async def post_events(request: Request) -> JSONResponse:
        authorize(request, http().tokens, "events:write")
        data = await read_json(request, http().max_body)
        events = _parse_batch(data, "events", parse_event, "event")
        stored, duplicates = await app.db.run_sync(lambda conn: insert_events_sync(conn, events))
        await _call_hook(app, stored)
        return JSONResponse(
            {
                "accepted": len(stored),
                "duplicates": len(duplicates),
                "duplicate_ids": duplicates[:MAX_REPORTED_ERRORS],
            }
        )

    async def get_rewards(request: Request) -> JSONResponse:
        authorize(request, http().tokens, "read")
        customer_id = request.path_params["customer_id"]
        states = _reward_states(request)
        now = app.clock.now()
        result = await app.db.run_sync(
            lambda conn: _rewards_sync(conn, customer_id, now, states), write=False
        )
        if result is None:
            raise ApiError(404, "not_found", "no such customer", {"customer_id": customer_id})
        return JSONResponse(result)

    return [
        Route("/v1/customers:batch", batch_customers, methods=["POST"]),
        Route("/v1/customers/{customer_id}", put_customer, methods=["PUT"]),
        Route("/v1/customers/{customer_id}/rewards", get_rewards, methods=["GET"]),
        Route("/v1/events", post_events, methods=["POST"]),
    ]
