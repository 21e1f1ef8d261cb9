"""Routes for one customer's tags: read them with their reasons, add or remove one by hand.

``GET /v1/customers/{customer_id}/tags`` (scope ``read``) lists the customer's tags,
each with why it is there; ``POST`` and ``DELETE /v1/customers/{customer_id}/tags/{tag}``
(scope ``customers:write``) add or remove one tag, with an optional ``?reason=``. An edit
is one transaction of :mod:`promod.tags.store` (the tag history records it with source
``api:TOKEN_NAME``) and is appended to the audit log::

    POST /v1/customers/c42/tags/vip?reason=phone%20call
    -> 200 {"customer_id": "c42", "tag": "vip", "changed": true, "tags": [...]}

A tag a ``sync`` rule maintains may be set again (or removed) by that rule's next
evaluation; see docs/tags.md.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from promod.admin.registry import Caller
from promod.customers.records import ID_PATTERN, MAX_NAME_LENGTH
from promod.http.auth import authorize
from promod.http.body import ApiRoute, scope
from promod.http.customers import CustomerPath
from promod.http.errors import ApiError, error_responses
from promod.store.seam import Transaction
from promod.tags import store

if TYPE_CHECKING:
    from promod.app import App

__all__ = ["tag_router"]

WRITE_SCOPE = "customers:write"

TagPath = Annotated[
    str,
    PathParam(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=ID_PATTERN,
        description="the tag: 1-128 characters, no control characters or outer spaces",
    ),
]
Reason = Annotated[
    str | None,
    Query(max_length=500, description="why (kept in the tag history and the audit log)"),
]


class TagReason(BaseModel):
    """One tag of the customer and why it is there."""

    tag: str
    source: str | None = Field(
        description="what set it: rule:NAME@VERSION, operator:USER, api:TOKEN, api (a"
        " profile write), import; null for tags set before tag history was kept"
    )
    rule: str | None = Field(description="the rule that set it, if one did")
    reason: str | None = Field(description="the reason given with a manual edit")
    since: float | None = Field(description="when it was set (unix seconds)")


class CustomerTags(BaseModel):
    customer_id: str
    tags: list[TagReason]


class TagChange(BaseModel):
    """The outcome of an edit, and the customer's tags after it."""

    customer_id: str
    tag: str
    changed: bool = Field(description="false: the customer already had (or lacked) the tag")
    tags: list[TagReason]


def tag_router(app: App) -> APIRouter:
    """The customer tag routes over ``app``."""
    router = APIRouter(route_class=ApiRoute, tags=["customers"])

    @router.get(
        "/v1/customers/{customer_id}/tags",
        operation_id="getCustomerTags",
        summary="A customer's tags, each with why it is there",
        response_model=CustomerTags,
        responses=error_responses(401, 403, 404, 422),
        openapi_extra=scope("read"),
    )
    async def get_tags(customer_id: CustomerPath) -> dict[str, Any]:
        found = await app.db.run(partial(store.customer_tags, customer_id=customer_id), write=False)
        if found is None:
            raise ApiError(404, "not_found", "no such customer", {"customer_id": customer_id})
        return {"customer_id": customer_id, "tags": found}

    async def edit(
        request: Request, customer_id: str, tag: str, reason: str | None, add: bool
    ) -> dict[str, Any]:
        token = authorize(request, app.config.http.tokens, WRITE_SCOPE)
        source = f"api:{token.name}"
        fn = store.add_tag if add else store.remove_tag
        now = float(app.clock.now())

        def work(tx: Transaction) -> tuple[bool, list[dict[str, Any]]]:
            changed = fn(
                tx,
                customer_id=customer_id,
                tag=tag,
                source=source,
                reason=reason,
                now=now,
            )
            return changed, store.tag_reasons(tx, customer_id=customer_id)

        try:
            changed, tags = await app.db.run(work)
        except store.TagError as exc:
            raise ApiError(404, "not_found", exc.message, {"customer_id": customer_id}) from None
        caller = Caller.daemon(source)
        command = "http.tags.add" if add else "http.tags.remove"
        args = {"customer": customer_id, "tag": tag, "reason": reason, "changed": changed}
        await app.audit.append(caller, command, args, "ok")
        return {"customer_id": customer_id, "tag": tag, "changed": changed, "tags": tags}

    @router.post(
        "/v1/customers/{customer_id}/tags/{tag}",
        operation_id="addCustomerTag",
        summary="Tag a customer by hand (tag history and audit log record it)",
        response_model=TagChange,
        responses=error_responses(401, 403, 404, 422, 503),
        openapi_extra=scope(WRITE_SCOPE),
    )
    async def add_tag(
        request: Request, customer_id: CustomerPath, tag: TagPath, reason: Reason = None
    ) -> dict[str, Any]:
        return await edit(request, customer_id, tag, reason, add=True)

    @router.delete(
        "/v1/customers/{customer_id}/tags/{tag}",
        operation_id="removeCustomerTag",
        summary="Untag a customer by hand (tag history and audit log record it)",
        response_model=TagChange,
        responses=error_responses(401, 403, 404, 422, 503),
        openapi_extra=scope(WRITE_SCOPE),
    )
    async def remove_tag(
        request: Request, customer_id: CustomerPath, tag: TagPath, reason: Reason = None
    ) -> dict[str, Any]:
        return await edit(request, customer_id, tag, reason, add=False)

    return router
