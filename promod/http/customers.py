"""Routes for customers, behaviour events and what a customer holds.

``PUT /v1/customers/{customer_id}`` and ``POST /v1/customers:batch`` create or replace
profiles (all-or-nothing; every invalid field reported with its key path);
``POST /v1/events`` stores a batch of events, skipping ids already stored, then hands
the new ones to the ``on_events`` hook; ``GET /v1/customers/{customer_id}/rewards``
lists the rewards the customer can still use (``?include=all`` or ``?state=S`` for the
others: redeemed, revoked, expired; see :mod:`promod.rewards.holdings`) and the wallet
balance. Bodies are the record models of :mod:`promod.customers.records`::

    router = customer_router(app)    # a FastAPI router, included by build_app

The ``on_events`` hook: when ``app.on_events`` is set, it is called after
the batch has committed with the list of newly stored
:class:`promod.customers.store.StoredEvent` (``seq`` and the ``Event``), in order;
duplicates are not passed. An awaitable result is awaited before the response is
sent (so keep it short: hand the events to an actor). An exception in the hook is
logged and does not fail the request — the events are stored either way.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from promod.customers.records import (
    ID_PATTERN,
    MAX_ID_LENGTH,
    Customer,
    CustomerFields,
    Event,
    Identifier,
)
from promod.customers.store import (
    StoredEvent,
    customer_known_sync,
    has_grants_sync,
    insert_events_sync,
    upsert_customers_sync,
    wallet_points_sync,
)
from promod.http.body import ApiRoute, scope
from promod.http.errors import MAX_REPORTED_ERRORS, ApiError, error_responses
from promod.logs import get_logger
from promod.rewards.holdings import REWARD_STATES, customer_rewards_sync
from promod.store.seam import Transaction, legacy_connection

if TYPE_CHECKING:
    from promod.app import App

__all__ = ["MAX_BATCH", "CustomerPath", "customer_router"]

log = get_logger("promod.http")

MAX_BATCH = 10_000
CONSENT_SOURCE = "api"

CustomerPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=ID_PATTERN,
        description="the customer's id",
    ),
]


_EXAMPLE_CUSTOMER: dict[str, Any] = {
    "email": "a@example.org",
    "timezone": "Europe/Berlin",
    "attributes": {"country": "DE", "vip": True, "ltv": "1234.50"},
    "tags": ["bonus_interest"],
    "consents": {"marketing_email": True},
}
_EXAMPLE_EVENT: dict[str, Any] = {
    "id": "ord-1000",
    "customer_id": "c42",
    "name": "purchase",
    "ts": "2026-11-20T18:03:00Z",
    "properties": {"amount": "59.90"},
}


class CustomerBody(CustomerFields):
    """A customer profile; the id comes from the path (an ``id`` here must equal it)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        title="CustomerBody",
        json_schema_extra={"examples": [_EXAMPLE_CUSTOMER]},
    )

    id: Identifier | None = Field(
        default=None, description="optional; when given it must equal the id in the path (409)"
    )


class CustomerResult(BaseModel):
    """The stored profile and whether it was new."""

    customer: Customer
    created: bool


class CustomersBatch(BaseModel):
    """Up to 10,000 profiles, stored all or none."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"customers": [{"id": "c42", **_EXAMPLE_CUSTOMER}]}]},
    )

    customers: list[Customer] = Field(max_length=MAX_BATCH)


class BatchResult(BaseModel):
    upserted: int
    created: int
    updated: int


class EventsBatch(BaseModel):
    """Up to 10,000 events, stored all or none (ids already stored are skipped)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"events": [_EXAMPLE_EVENT]}]}
    )

    events: list[Event] = Field(max_length=MAX_BATCH)


class EventsResult(BaseModel):
    accepted: int = Field(description="events newly stored")
    duplicates: int = Field(description="events skipped because their id was already stored")
    duplicate_ids: list[str] = Field(description="the first 100 skipped ids")


RewardState = Literal["reserved", "issued", "redeemed", "revoked", "expired"]


class Reward(BaseModel):
    """One reward of the customer, in its real state."""

    grant_id: int
    campaign_id: str
    run_id: int
    provider: str
    state: RewardState = Field(
        description="reserved: being issued; issued: usable;"
        " redeemed, revoked, expired: can no longer be used"
    )
    amount: str | None
    value: str
    currency: str | None
    code: str | None
    granted_at: str | None
    issued_at: str | None
    expires_at: str | None
    redeemed_at: str | None
    ended_at: str | None = Field(description="when a revoked or expired reward ended")


class Wallet(BaseModel):
    points: int


class Rewards(BaseModel):
    """What a customer holds: live grants and the wallet balance."""

    customer_id: str
    rewards: list[Reward]
    wallet: Wallet


def _reward_states(include: str, state: str | None) -> Collection[str] | None:
    """The states asked for; None: the usable ones (the default view).

    ``state`` names the one state wanted, whatever ``include`` says.
    """
    if state is not None:
        return (state,)
    return REWARD_STATES if include == "all" else None


def _rewards_sync(
    tx: Transaction, customer_id: str, now: float, states: Collection[str] | None
) -> dict[str, Any] | None:
    known = customer_known_sync(tx, customer_id)
    held = customer_rewards_sync(legacy_connection(tx), customer_id, now=now, states=states)
    balance = wallet_points_sync(tx, customer_id)
    if not known and not held and balance is None and not has_grants_sync(tx, customer_id):
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
        "wallet": {"points": balance if balance is not None else 0},
    }


def _iso(ts: float | None) -> str | None:
    from promod.clock import utc_iso

    return None if ts is None else utc_iso(float(ts))


async def _call_hook(app: App, stored: Sequence[StoredEvent]) -> None:
    hook = app.on_events
    if hook is None or not stored:
        return
    try:
        result = hook(list(stored))
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        log.error("on_events_hook_failed", error=repr(exc), events=len(stored))


def customer_router(app: App) -> APIRouter:
    """The customer, event and rewards routes over ``app``."""
    router = APIRouter(route_class=ApiRoute, tags=["customers"])
    body_errors = error_responses(400, 401, 403, 413, 415, 422, 503)

    @router.put(
        "/v1/customers/{customer_id}",
        operation_id="putCustomer",
        summary="Create or replace a customer profile",
        response_model=CustomerResult,
        responses={
            **body_errors,
            201: {
                "content": {"application/json": {"schema": _RESULT_REF}},
                "description": "Created",
                "links": _CUSTOMER_LINKS,
            },
            200: {"description": "Replaced", "links": _CUSTOMER_LINKS},
            **error_responses(409),
        },
        openapi_extra=scope("customers:write"),
    )
    async def put_customer(
        customer_id: CustomerPath, body: Annotated[CustomerBody, Body()]
    ) -> JSONResponse:
        if body.id is not None and body.id != customer_id:
            raise ApiError(
                409,
                "conflict",
                "the body's id differs from the id in the path",
                {"errors": [{"path": "id", "field": "id", "message": "differs from the path"}]},
            )
        fields = body.model_dump(exclude={"id"})
        customer = Customer.model_construct(id=customer_id, **fields)
        now = app.clock.now()
        summary = await app.db.run(
            lambda tx: upsert_customers_sync(tx, [customer], now=now, source=CONSENT_SOURCE)
        )
        created = bool(summary.created)
        return JSONResponse(
            {"customer": customer.to_dict(), "created": created},
            status_code=201 if created else 200,
        )

    @router.post(
        "/v1/customers:batch",
        operation_id="putCustomers",
        summary="Create or replace up to 10,000 customer profiles, all or none",
        response_model=BatchResult,
        responses=body_errors,
        openapi_extra=scope("customers:write"),
    )
    async def batch_customers(body: CustomersBatch) -> BatchResult:
        now = app.clock.now()
        summary = await app.db.run(
            lambda tx: upsert_customers_sync(tx, body.customers, now=now, source=CONSENT_SOURCE)
        )
        return BatchResult(
            upserted=len(summary.created) + len(summary.updated),
            created=len(summary.created),
            updated=len(summary.updated),
        )

    @router.post(
        "/v1/events",
        operation_id="postEvents",
        summary="Store a batch of behaviour events",
        response_model=EventsResult,
        responses={
            **body_errors,
            200: {"description": "Stored", "links": _EVENT_LINKS},
        },
        openapi_extra=scope("events:write"),
    )
    async def post_events(body: EventsBatch) -> EventsResult:
        events = body.events
        stored, duplicates = await app.db.run(lambda tx: insert_events_sync(tx, events))
        await _call_hook(app, stored)
        return EventsResult(
            accepted=len(stored),
            duplicates=len(duplicates),
            duplicate_ids=duplicates[:MAX_REPORTED_ERRORS],
        )

    @router.get(
        "/v1/customers/{customer_id}/rewards",
        operation_id="getRewards",
        summary="What a customer holds: rewards with their real state, and the wallet",
        description="By default only the rewards the customer can still use;"
        " ?include=all lists every reward with its state, ?state=S those in one state"
        " (include is then not used).",
        response_model=Rewards,
        responses=error_responses(401, 403, 404, 422),
        openapi_extra=scope("read"),
    )
    async def get_rewards(
        customer_id: CustomerPath,
        include: Annotated[
            Literal["usable", "all"],
            Query(
                description="usable: rewards that can still be used (reserved, issued);"
                " all: redeemed, revoked and expired ones too"
            ),
        ] = "usable",
        state: Annotated[
            RewardState | None, Query(description="only rewards in this state")
        ] = None,
    ) -> dict[str, Any]:
        states = _reward_states(include, state)
        now = app.clock.now()
        result: dict[str, Any] | None = await app.db.run(
            lambda tx: _rewards_sync(tx, customer_id, now, states), write=False
        )
        if result is None:
            raise ApiError(404, "not_found", "no such customer", {"customer_id": customer_id})
        return result

    return router


_EVENT_LINKS: dict[str, Any] = {
    "GetRewards": {
        "operationId": "getRewards",
        "parameters": {"customer_id": "$request.body#/events/0/customer_id"},
        "description": "What the customer of the first event holds (a live campaign may"
        " have granted it).",
    }
}
_RESULT_REF = {"$ref": "#/components/schemas/CustomerResult"}

# OpenAPI links from a stored customer to what can follow it.
_CUSTOMER_LINKS: dict[str, Any] = {
    "GetRewards": {
        "operationId": "getRewards",
        "parameters": {"customer_id": "$request.path.customer_id"},
        "description": "What the stored customer holds.",
    },
    "PostEvents": {
        "operationId": "postEvents",
        "requestBody": {
            "events": [
                {
                    "customer_id": "$request.path.customer_id",
                    "name": "signup",
                    "ts": "2026-11-20T18:03:00Z",
                }
            ]
        },
        "description": "Events of the stored customer.",
    },
}
