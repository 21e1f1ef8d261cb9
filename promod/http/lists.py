"""``PUT /v1/lists/{name}`` and ``POST /v1/lists/{name}:add``: fill custom lists over HTTP.

The body is ``{"customer_ids": ["c1", "c2", ...]}`` (at most 100,000 ids; the body
size limit applies too), a :class:`ListMembers`. ``PUT`` replaces the list by exactly
these ids (creating it), ``:add`` adds them to it; either is one transaction through
the versioned lists of :mod:`promod.lists.store`, so a reader sees the old list or the
new one, never a mix. One invalid id refuses the call (422, every invalid id with its
index), nothing stored. Ids without a customer profile are kept and reported::

    PUT /v1/lists/vip-2026  {"customer_ids": ["c1", "c2"]}
    -> 201 {"list": "vip-2026", "version": 1, "members": 2, "added": 2, "removed": 0,
            "without_profile": 1, "without_profile_ids": ["c2"], "created": true, ...}

Scope ``customers:write``: lists are customer data.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.convertors import Convertor, register_url_convertor

from promod.customers.records import Identifier
from promod.http.body import ApiRoute, scope
from promod.http.errors import error_responses
from promod.lists.store import LIST_NAME, SAMPLE, Mode, list_exists, set_members
from promod.store.seam import Transaction

if TYPE_CHECKING:
    from promod.app import App

__all__ = ["MAX_MEMBERS", "ListMembers", "list_router"]

MAX_MEMBERS = 100_000
SOURCE = "api"

ListName = Annotated[
    str,
    Path(
        pattern=f"^{LIST_NAME.pattern}$",
        description="the custom list: 1 to 128 letters, digits and _ . - (starting with a"
        " letter or digit)",
    ),
]


class _ListPath(Convertor[str]):
    """A list's path segment, unless it names the ``:add`` resource (which only takes POST).

    So ``PUT /v1/lists/x:add`` is a 405 of that resource, not a bad list name.
    """

    regex = r"[^/]+(?<!:add)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class ListMembers(BaseModel):
    """The customers of a call; repeats count once, a customer profile is not needed."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"customer_ids": ["c42", "c43"]}]},
    )

    customer_ids: list[Identifier] = Field(max_length=MAX_MEMBERS)


class ListChange(BaseModel):
    """What a call did to the list."""

    list: str
    version: int = Field(description="the list's current version")
    mode: Literal["replace", "add"]
    given: int = Field(description="distinct ids in the call")
    members: int = Field(description="members of the list now")
    added: int
    removed: int
    without_profile: int = Field(description="ids of the call that have no customer profile")
    without_profile_ids: builtins.list[str] = Field(max_length=SAMPLE)
    created: bool = Field(description="the list was new")


def list_router(app: App) -> APIRouter:
    """The custom list routes over ``app``."""
    register_url_convertor("promod_list", _ListPath())
    router = APIRouter(route_class=ApiRoute, tags=["lists"])
    created = {"model": ListChange, "description": "The list was created"}
    errors = error_responses(400, 401, 403, 413, 415, 422, 503)

    async def change(name: str, ids: list[str], mode: Mode) -> JSONResponse:
        now = app.clock.now()

        def work(tx: Transaction) -> dict[str, Any]:
            existed = list_exists(tx, name)
            summary = set_members(tx, name, ids, mode=mode, source=SOURCE, now=now)
            return {**summary, "created": not existed}

        summary = await app.db.run(work)
        return JSONResponse(summary, status_code=201 if summary["created"] else 200)

    @router.put(
        "/v1/lists/{name:promod_list}",
        operation_id="putList",
        summary="Replace a custom list by exactly these customers, atomically",
        description="One transaction: campaigns and segments see the old list or the new"
        " one, never a mix. One invalid id refuses the call (422, every invalid id with its"
        " index). Ids without a customer profile are kept and reported in without_profile.",
        response_model=ListChange,
        responses={201: created, **errors},
        openapi_extra=scope("customers:write"),
    )
    async def replace(name: ListName, body: ListMembers) -> JSONResponse:
        return await change(name, body.customer_ids, "replace")

    @router.post(
        "/v1/lists/{name}:add",
        operation_id="addToList",
        summary="Add customers to a custom list (created if new)",
        description="Ids already on the list count once. One invalid id refuses the call"
        " (422); nothing is stored.",
        response_model=ListChange,
        responses={201: created, **errors},
        openapi_extra=scope("customers:write"),
    )
    async def add(name: ListName, body: ListMembers) -> JSONResponse:
        return await change(name, body.customer_ids, "add")

    return router
