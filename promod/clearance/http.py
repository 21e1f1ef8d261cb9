"""The clearance routes of the HTTP API (scope ``clearance``), after Optimove's
GetProcessedCampaignCustomers and UpdateCustomerPromotionStatus.

``GET /v1/campaigns/{id}/runs/{run}/customers?status=&cursor=&limit=`` pages through
a run's target list in rank order (``status``: pending, meaning not yet answered,
approved, rejected, granted or refused; ``cursor``: the ``next_cursor`` of the page
before); ``POST .../customers/status`` records up to 10,000 answers
``{"customers": [{"customer_id", "approved"}]}`` at once, all or none, the last answer
for a customer winning until the deadline. A customer not on the run's list, or an
answer after the deadline, is a 409::

    router = clearance_router(app)    # included by promod.http.routes.build_app
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from promod.clearance.store import (
    DEFAULT_PAGE,
    MAX_ANSWERS,
    MAX_PAGE,
    ClearanceError,
    answer_sync,
    list_targets_sync,
)
from promod.customers.records import ID_PATTERN, MAX_ID_LENGTH, Identifier
from promod.http.body import ApiRoute, scope
from promod.http.errors import ApiError, error_responses

if TYPE_CHECKING:
    from promod.app import App

__all__ = ["CURSOR_PATTERN", "clearance_router"]

SCOPE = "clearance"
CUSTOMERS = "/v1/campaigns/{id}/runs/{run}/customers"
STATUS = "/v1/campaigns/{id}/runs/{run}/customers/status"
CURSOR_PATTERN = r"^[0-9]{1,15}$"
_MAX_RUN = 10**15 - 1

Status = Literal["pending", "approved", "rejected", "granted", "refused"]
CampaignId = Annotated[
    str,
    Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description="campaign id"),
]
RunId = Annotated[int, Path(ge=1, le=_MAX_RUN, description="the run's number")]


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    customer_id: Identifier
    approved: bool


class Answers(BaseModel):
    """Up to 10,000 answers, applied all or none; for a repeated id the last one wins."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "customers": [
                        {"customer_id": "c42", "approved": True},
                        {"customer_id": "c43", "approved": False},
                    ]
                }
            ]
        },
    )

    customers: list[Answer] = Field(max_length=MAX_ANSWERS)


class AnswerResult(BaseModel):
    run_id: int
    updated: int
    approved: int
    rejected: int
    clearance_required_by: str


class Target(BaseModel):
    customer_id: str
    status: Status


class TargetPage(BaseModel):
    """One page of the target list; ``next_cursor`` is null on the last page."""

    customers: list[Target]
    next_cursor: str | None = Field(pattern=CURSOR_PATTERN)


def _api_error(exc: ClearanceError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message, exc.details)


_PAGE_LINKS: dict[str, Any] = {
    "PostStatus": {
        "operationId": "postClearanceStatus",
        "parameters": {"id": "$request.path.id", "run": "$request.path.run"},
        "requestBody": {
            "customers": [
                {"customer_id": "$response.body#/customers/0/customer_id", "approved": True}
            ]
        },
        "description": "Approve the first listed customer.",
    },
    "NextPage": {
        "operationId": "getClearanceCustomers",
        "parameters": {
            "id": "$request.path.id",
            "run": "$request.path.run",
            "cursor": "$response.body#/next_cursor",
        },
        "description": "The next page of the list.",
    },
}


def clearance_router(app: App) -> APIRouter:
    """The target list and status routes over ``app``."""
    router = APIRouter(route_class=ApiRoute, tags=["clearance"])

    @router.get(
        CUSTOMERS,
        operation_id="getClearanceCustomers",
        summary="A run's processed target list, awaiting clearance",
        response_model=TargetPage,
        responses={
            200: {"description": "One page", "links": _PAGE_LINKS},
            **error_responses(401, 403, 404, 422),
        },
        openapi_extra=scope(SCOPE),
    )
    async def get_customers(
        id: CampaignId,
        run: RunId,
        status: Annotated[Status | None, Query(description="only this status")] = None,
        cursor: Annotated[
            str | None,
            Query(pattern=CURSOR_PATTERN, description="the next_cursor of the page before"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> dict[str, Any]:
        after = -1 if cursor is None else int(cursor)
        try:
            page: dict[str, Any] = await app.db.run(
                lambda tx: list_targets_sync(tx, id, run, status=status, cursor=after, limit=limit),
                write=False,
            )
        except ClearanceError as exc:
            raise _api_error(exc) from None
        return page

    @router.post(
        STATUS,
        operation_id="postClearanceStatus",
        summary="Approve or reject customers of a run (idempotent)",
        response_model=AnswerResult,
        responses=error_responses(400, 401, 403, 404, 409, 413, 415, 422, 503),
        openapi_extra=scope(SCOPE),
    )
    async def post_status(id: CampaignId, run: RunId, body: Answers) -> dict[str, Any]:
        answers: dict[str, bool] = {}
        for answer in body.customers:
            answers.pop(answer.customer_id, None)
            answers[answer.customer_id] = answer.approved
        now = app.clock.now()
        try:
            result: dict[str, Any] = await app.db.run(
                lambda tx: answer_sync(tx, id, run, answers, now=now)
            )
        except ClearanceError as exc:
            raise _api_error(exc) from None
        return result

    return router
