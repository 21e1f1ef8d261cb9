"""The OpenAPI 3.1 document of the HTTP API, served at ``/openapi.json``.

Written by hand next to the routes and kept true by tests/http/test_openapi.py,
which compares its paths and methods with the router and checks every example
against its schema. Add a route: add its path here too (the test says so)::

    document = openapi_document(app.config.http.public_url, __version__)
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["SCHEMAS", "openapi_document", "operations"]

_ID = {"type": "string", "minLength": 1, "maxLength": 128}
_NAME = {"type": "string", "minLength": 1, "maxLength": 128}
_SCALAR = {"type": ["string", "integer", "number", "boolean", "null"]}
_MONEY = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
_TIME = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {},
                },
            }
        },
    },
    "Customer": {
        "type": "object",
        "description": "A customer profile (DESIGN §9). In PUT the id comes from the path.",
        "additionalProperties": False,
        "properties": {
            "id": _ID,
            "email": {"type": ["string", "null"], "format": "email", "maxLength": 254},
            "timezone": {"type": ["string", "null"], "description": "IANA time zone"},
            "attributes": {
                "type": "object",
                "additionalProperties": _SCALAR,
                "propertyNames": {"pattern": r"^\w[\w.:-]{0,127}$"},
            },
            "tags": {"type": "array", "items": _NAME},
            "consents": {"type": "object", "additionalProperties": {"type": "boolean"}},
        },
    },
    "Event": {
        "type": "object",
        "additionalProperties": False,
        "required": ["customer_id", "name", "ts"],
        "properties": {
            "id": {**_ID, "description": "optional; an id already stored is a duplicate"},
            "customer_id": _ID,
            "name": _NAME,
            "ts": {"type": "string", "format": "date-time", "description": "with a zone"},
            "properties": {"type": "object"},
        },
    },
    "CustomerResult": {
        "type": "object",
        "required": ["customer", "created"],
        "properties": {
            "customer": {"$ref": "#/components/schemas/Customer"},
            "created": {"type": "boolean"},
        },
    },
    "CustomersBatch": {
        "type": "object",
        "additionalProperties": False,
        "required": ["customers"],
        "properties": {
            "customers": {
                "type": "array",
                "maxItems": 10000,
                "items": {
                    "allOf": [{"$ref": "#/components/schemas/Customer"}],
                    "required": ["id"],
                },
            }
        },
    },
    "CustomersBatchResult": {
        "type": "object",
        "required": ["upserted", "created", "updated"],
        "properties": {
            "upserted": {"type": "integer"},
            "created": {"type": "integer"},
            "updated": {"type": "integer"},
        },
    },
    "EventsBatch": {
        "type": "object",
        "additionalProperties": False,
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "maxItems": 10000,
                "items": {"$ref": "#/components/schemas/Event"},
            }
        },
    },
    "EventsResult": {
        "type": "object",
        "required": ["accepted", "duplicates", "duplicate_ids"],
        "properties": {
            "accepted": {"type": "integer", "description": "events newly stored"},
            "duplicates": {"type": "integer", "description": "events skipped: id known"},
            "duplicate_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 100},
        },
    },
    "Rewards": {
        "type": "object",
        "required": ["customer_id", "rewards", "wallet"],
        "properties": {
            "customer_id": {"type": "string"},
            "rewards": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["grant_id", "campaign_id", "provider", "state", "value"],
                    "properties": {
                        "grant_id": {"type": "integer"},
                        "campaign_id": {"type": "string"},
                        "run_id": {"type": "integer"},
                        "provider": {"type": "string"},
                        "state": {
                            "enum": ["reserved", "issued", "redeemed", "revoked", "expired"],
                            "description": "reserved: being issued; issued: usable;"
                            " redeemed, revoked, expired: can no longer be used",
                        },
                        "amount": {"type": ["string", "null"]},
                        "value": _MONEY,
                        "currency": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                        "granted_at": _TIME,
                        "issued_at": _TIME,
                        "expires_at": _TIME,
                        "redeemed_at": _TIME,
                        "ended_at": {
                            **_TIME,
                            "description": "when a revoked or expired reward ended",
                        },
                    },
                },
            },
            "wallet": {
                "type": "object",
                "required": ["points"],
                "properties": {"points": {"type": "integer"}},
            },
        },
    },
    "ListMembers": {
        "type": "object",
        "additionalProperties": False,
        "required": ["customer_ids"],
        "properties": {
            "customer_ids": {
                "type": "array",
                "maxItems": 100000,
                "items": {**_ID, "pattern": r"^\S(.*\S)?$"},
                "description": "customer ids; repeats count once; a profile is not needed",
            }
        },
    },
    "ListChange": {
        "type": "object",
        "required": [
            "list",
            "version",
            "mode",
            "members",
            "added",
            "removed",
            "without_profile",
            "without_profile_ids",
            "created",
        ],
        "properties": {
            "list": {"type": "string"},
            "version": {"type": "integer", "description": "the list's current version"},
            "mode": {"enum": ["replace", "add"]},
            "given": {"type": "integer", "description": "distinct ids in the call"},
            "members": {"type": "integer", "description": "members of the list now"},
            "added": {"type": "integer"},
            "removed": {"type": "integer"},
            "without_profile": {
                "type": "integer",
                "description": "ids of the call that have no customer profile (kept)",
            },
            "without_profile_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
            "created": {"type": "boolean", "description": "the list was new"},
        },
    },
    "Redemption": {
        "type": "object",
        "additionalProperties": False,
        "required": ["code", "customer_id", "ip"],
        "properties": {
            "code": {"type": "string", "minLength": 1, "maxLength": 128},
            "customer_id": _ID,
            "ip": {
                "type": "string",
                "description": "the end customer's IP address, for the fraud limits",
                "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
            },
        },
    },
    "RedemptionResult": {
        "type": "object",
        "required": ["redeemed", "reason"],
        "properties": {
            "redeemed": {"type": "boolean"},
            "reason": {"type": ["string", "null"]},
        },
    },
    "TargetList": {
        "type": "object",
        "required": ["customers", "next_cursor"],
        "properties": {
            "customers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["customer_id", "status"],
                    "properties": {
                        "customer_id": {"type": "string"},
                        "status": {
                            "enum": ["pending", "approved", "rejected", "granted", "refused"]
                        },
                    },
                },
            },
            "next_cursor": {
                "type": ["string", "null"],
                "description": "pass as ?cursor= for the next page; null on the last page",
            },
        },
    },
    "ClearanceAnswers": {
        "type": "object",
        "additionalProperties": False,
        "required": ["customers"],
        "properties": {
            "customers": {
                "type": "array",
                "maxItems": 10000,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["customer_id", "approved"],
                    "properties": {"customer_id": _ID, "approved": {"type": "boolean"}},
                },
            }
        },
    },
    "ClearanceAnswersResult": {
        "type": "object",
        "required": ["run_id", "updated", "approved", "rejected", "clearance_required_by"],
        "properties": {
            "run_id": {"type": "integer"},
            "updated": {"type": "integer", "description": "customers answered by this call"},
            "approved": {"type": "integer"},
            "rejected": {"type": "integer"},
            "clearance_required_by": {"type": "string", "format": "date-time"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"enum": ["ok", "unavailable"]}},
    },
    "Unsubscribed": {
        "type": "object",
        "required": ["unsubscribed", "consent"],
        "properties": {
            "unsubscribed": {"const": True},
            "consent": {"type": ["string", "null"]},
        },
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": _ref(name)}
    if example is not None:
        media["example"] = example
    return {"content": {"application/json": media}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "malformed request (bad JSON, not an object)",
        401: "missing or unknown bearer token",
        403: "the token lacks the scope",
        404: "not found",
        409: "conflict",
        413: "body larger than [http] max_body",
        415: "not application/json",
        422: "invalid record(s): details.errors lists each with its path and field",
        503: "not available",
    }
    return {str(s): {"description": text[s], **_json("Error")} for s in sorted(set(statuses))}


_AUTH_ERRORS = (401, 403)
_BODY_ERRORS = (400, 413, 415, 422)

_CUSTOMER_EXAMPLE = {
    "email": "a@example.org",
    "timezone": "Europe/Berlin",
    "attributes": {"country": "DE", "vip": True},
    "tags": ["bonus_interest"],
    "consents": {"marketing_email": True},
}
_EVENT_EXAMPLE = {
    "id": "ord-1001",
    "customer_id": "c42",
    "name": "purchase",
    "ts": "2026-11-20T18:03:00Z",
    "properties": {"amount": "59.90"},
}


def _op(
    summary: str,
    scope: str | None,
    responses: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    description: str = "",
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary}
    if description:
        op["description"] = description
    if scope is not None:
        op["security"] = [{"bearer": []}]
        op["x-promod-scope"] = scope
        op["description"] = (description + f"\n\nNeeds a token with the `{scope}` scope.").strip()
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, **body}
    op["responses"] = responses
    return op


def _customer_id_param() -> dict[str, Any]:
    return {"name": "customer_id", "in": "path", "required": True, "schema": _ID}


def _run_params() -> list[dict[str, Any]]:
    return [
        {"name": "id", "in": "path", "required": True, "schema": _ID, "description": "campaign"},
        {
            "name": "run",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
            "description": "the run id of the clearance.required webhook",
        },
    ]


def _clearance_operations() -> dict[str, dict[str, Any]]:
    list_params = [
        *_run_params(),
        {
            "name": "status",
            "in": "query",
            "required": False,
            "schema": {"enum": ["pending", "approved", "rejected", "granted", "refused"]},
            "description": "only customers in this state; pending = not answered yet",
        },
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
            "description": "next_cursor of the previous page",
        },
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000},
        },
    ]
    return {
        "/v1/campaigns/{id}/runs/{run}/customers": {
            "get": _op(
                "A run's target list awaiting clearance, in rank order, page by page",
                "clearance",
                {
                    "200": {
                        "description": "one page",
                        **_json(
                            "TargetList",
                            {
                                "customers": [
                                    {"customer_id": "c42", "status": "pending"},
                                    {"customer_id": "c43", "status": "approved"},
                                ],
                                "next_cursor": "1",
                            },
                        ),
                    },
                    **_errors(*_AUTH_ERRORS, 404, 422),
                },
                parameters=list_params,
                description="Optimove's GetProcessedCampaignCustomers. The list is the"
                " processed target group (segment, consent and caps applied) that the"
                " clearance.required webhook announced.",
            )
        },
        "/v1/campaigns/{id}/runs/{run}/customers/status": {
            "post": _op(
                "Approve or reject customers of a run, all or nothing, until the deadline",
                "clearance",
                {
                    "200": {
                        "description": "every answer recorded",
                        **_json(
                            "ClearanceAnswersResult",
                            {
                                "run_id": 7,
                                "updated": 2,
                                "approved": 1,
                                "rejected": 1,
                                "clearance_required_by": "2026-12-01T09:00:00Z",
                            },
                        ),
                    },
                    **_errors(*_AUTH_ERRORS, *_BODY_ERRORS, 404, 409),
                },
                body=_json(
                    "ClearanceAnswers",
                    {
                        "customers": [
                            {"customer_id": "c42", "approved": True},
                            {"customer_id": "c43", "approved": False},
                        ]
                    },
                ),
                parameters=_run_params(),
                description="Optimove's UpdateCustomerPromotionStatus. Idempotent; the last"
                " answer for a customer wins. Only approved customers are granted (caps"
                " still apply). 409 once clearance_required_by has passed; 422 names every"
                " customer not on the list, and nothing of that call is applied.",
            )
        },
    }


def _list_operations() -> dict[str, dict[str, Any]]:
    name_param = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"},
        "description": "the custom list",
    }
    example = {
        "list": "vip-2026",
        "version": 4,
        "mode": "replace",
        "given": 2,
        "members": 2,
        "added": 1,
        "removed": 30,
        "without_profile": 1,
        "without_profile_ids": ["c43"],
        "created": False,
    }
    body = _json("ListMembers", {"customer_ids": ["c42", "c43"]})

    def responses(what: str) -> dict[str, Any]:
        return {
            "200": {"description": what, **_json("ListChange", example)},
            "201": {"description": "the list was created", **_json("ListChange", example)},
            **_errors(*_AUTH_ERRORS, *_BODY_ERRORS),
        }

    return {
        "/v1/lists/{name}": {
            "put": _op(
                "Replace a custom list by exactly these customers, atomically",
                "customers:write",
                responses("the list is now exactly these ids"),
                body=body,
                parameters=[name_param],
                description="One transaction: campaigns and segments see the old list or"
                " the new one, never a mix. One invalid id refuses the call (422, every"
                " invalid id with its index). Ids without a customer profile are kept and"
                " reported in without_profile.",
            )
        },
        "/v1/lists/{name}:add": {
            "post": _op(
                "Add customers to a custom list (created if new)",
                "customers:write",
                responses("the ids are members"),
                body=body,
                parameters=[name_param],
                description="Ids already on the list count once. One invalid id refuses"
                " the call (422); nothing is stored.",
            )
        },
    }


def operations() -> dict[str, dict[str, Any]]:
    """Path -> method -> operation, for every route of the API."""
    token_param = {
        "name": "token",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "maxLength": 2048},
    }
    return {
        "/healthz": {
            "get": _op(
                "Readiness: 200 once the daemon is ready, 503 before and while stopping",
                None,
                {
                    "200": {"description": "ready", **_json("Health", {"status": "ok"})},
                    "503": {
                        "description": "not ready",
                        **_json("Health", {"status": "unavailable"}),
                    },
                },
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics (text format 0.0.4)",
                "read",
                {
                    "200": {
                        "description": "metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(*_AUTH_ERRORS),
                },
            )
        },
        "/openapi.json": {
            "get": _op(
                "This document",
                None,
                {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            )
        },
        "/v1/customers/{customer_id}": {
            "put": _op(
                "Create or replace a customer",
                "customers:write",
                {
                    "200": {"description": "replaced", **_json("CustomerResult")},
                    "201": {"description": "created", **_json("CustomerResult")},
                    **_errors(*_AUTH_ERRORS, *_BODY_ERRORS),
                },
                body=_json("Customer", _CUSTOMER_EXAMPLE),
                parameters=[_customer_id_param()],
                description="Profile, attributes, tags and consents as given replace what"
                " is stored; consents not listed are dropped.",
            )
        },
        "/v1/customers:batch": {
            "post": _op(
                "Create or replace many customers, all or nothing",
                "customers:write",
                {
                    "200": {
                        "description": "all written",
                        **_json(
                            "CustomersBatchResult", {"upserted": 2, "created": 1, "updated": 1}
                        ),
                    },
                    **_errors(*_AUTH_ERRORS, *_BODY_ERRORS),
                },
                body=_json(
                    "CustomersBatch",
                    {"customers": [{"id": "c42", **_CUSTOMER_EXAMPLE}, {"id": "c43"}]},
                ),
                description="One invalid record refuses the batch (422, every invalid"
                " record with its index and field); a repeated id: the last one wins.",
            )
        },
        "/v1/customers/{customer_id}/rewards": {
            "get": _op(
                "What a customer holds: rewards with their real state, and the wallet",
                "read",
                {
                    "200": {
                        "description": "the customer's rewards",
                        **_json(
                            "Rewards",
                            {
                                "customer_id": "c42",
                                "rewards": [
                                    {
                                        "grant_id": 7,
                                        "campaign_id": "winback-30d",
                                        "run_id": 3,
                                        "provider": "wallet_points",
                                        "state": "issued",
                                        "amount": "500",
                                        "value": "5.00",
                                        "currency": "EUR",
                                        "code": None,
                                        "granted_at": "2026-12-01T09:00:00Z",
                                        "issued_at": "2026-12-01T09:00:00Z",
                                        "expires_at": None,
                                        "redeemed_at": None,
                                        "ended_at": None,
                                    }
                                ],
                                "wallet": {"points": 500},
                            },
                        ),
                    },
                    **_errors(*_AUTH_ERRORS, 404, 422),
                },
                parameters=[
                    _customer_id_param(),
                    {
                        "name": "include",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": ["usable", "all"], "default": "usable"},
                        "description": "usable: rewards that can still be used (reserved,"
                        " issued); all: redeemed, revoked and expired ones too",
                    },
                    {
                        "name": "state",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "enum": ["reserved", "issued", "redeemed", "revoked", "expired"]
                        },
                        "description": "only rewards in this state (not with include)",
                    },
                ],
                description="By default only the rewards the customer can still use;"
                " ?include=all lists every reward with its state, ?state=S those in one.",
            )
        },
        "/v1/events": {
            "post": _op(
                "Store a batch of behaviour events, idempotent on the event id",
                "events:write",
                {
                    "200": {
                        "description": "stored",
                        **_json(
                            "EventsResult",
                            {"accepted": 1, "duplicates": 1, "duplicate_ids": ["ord-1000"]},
                        ),
                    },
                    **_errors(*_AUTH_ERRORS, *_BODY_ERRORS),
                },
                body=_json("EventsBatch", {"events": [_EVENT_EXAMPLE]}),
                description="One invalid event refuses the batch (422). An event whose id"
                " is already stored is skipped and counted in `duplicates`.",
            )
        },
        **_list_operations(),
        "/v1/redemptions": {
            "post": _op(
                "Redeem a code for a customer",
                "redeem",
                {
                    "200": {
                        "description": "the outcome; a refusal is not an error",
                        **_json("RedemptionResult", {"redeemed": False, "reason": "expired"}),
                    },
                    **_errors(*_AUTH_ERRORS, *_BODY_ERRORS, 503),
                },
                body=_json(
                    "Redemption",
                    {"code": "XMAS-7KQ2-M9TZ", "customer_id": "c42", "ip": "203.0.113.7"},
                ),
            )
        },
        "/v1/unsubscribe": {
            "get": _op(
                "The unsubscribe link's confirmation page (never unsubscribes)",
                None,
                {
                    "200": {
                        "description": "a page with a confirm button",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    **_errors(400),
                },
                parameters=[token_param],
            ),
            "post": _op(
                "One-click unsubscribe (RFC 8058)",
                None,
                {
                    "200": {
                        "description": "the consent is withdrawn and the address suppressed",
                        **_json("Unsubscribed", {"unsubscribed": True, "consent": "marketing"}),
                    },
                    **_errors(400, 404, 413),
                },
                parameters=[token_param],
                body={
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "required": ["List-Unsubscribe"],
                                "properties": {"List-Unsubscribe": {"const": "One-Click"}},
                            },
                            "example": {"List-Unsubscribe": "One-Click"},
                        }
                    }
                },
                description="The signed token in the link is the authorisation.",
            ),
        },
        **_clearance_operations(),
    }


def openapi_document(public_url: str, version: str) -> dict[str, Any]:
    """The whole document for a daemon reachable at ``public_url``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "promod integration API",
            "version": version,
            "description": "Customers, events, redemptions and clearance for the site's"
            ' backend. Errors are {"error": {"code", "message", "details"}}.',
        },
        "servers": [{"url": public_url}],
        "paths": operations(),
        "components": {
            "schemas": copy.deepcopy(SCHEMAS),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `promod token create`; each operation"
                    " names the scope it needs in x-promod-scope.",
                }
            },
        },
    }
