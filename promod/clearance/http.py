"""The clearance routes of the HTTP API (scope ``clearance``), after Optimove's
GetProcessedCampaignCustomers and UpdateCustomerPromotionStatus.

``GET /v1/campaigns/{id}/runs/{run}/customers?status=&cursor=&limit=`` pages through
a run's target list in rank order (``status``: pending, meaning not yet answered,
approved, rejected, granted or refused); ``POST .../customers/status`` records up to
10,000 answers ``{"customers": [{"customer_id", "approved"}]}`` at once, all or none,
the last answer for a customer winning until the deadline::

    routes = clearance_routes(app)    # mounted by promod.http.routes.build_app
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from promod.clearance.store import (
    DEFAULT_PAGE,
    MAX_ANSWERS,
    MAX_PAGE,
    MAX_REPORTED,
    STATUSES,
    ClearanceError,
    answer_sync,
    list_targets_sync,
)
from promod.customers.records import MAX_ID_LENGTH
from promod.http.auth import authorize
from promod.http.body import read_json
from promod.http.errors import ApiError

if TYPE_CHECKING:
    from promod.app import App

__all__ = ["clearance_routes", "parse_answers"]

SCOPE = "clearance"
CUSTOMERS = "/v1/campaigns/{id}/runs/{run}/customers"
STATUS = "/v1/campaigns/{id}/runs/{run}/customers/status"
_MAX_CURSOR = 10**15


def _invalid(message: str, errors: list[dict[str, Any]], **details: Any) -> ApiError:
    return ApiError(422, "invalid", message, {"errors": errors[:MAX_REPORTED], **details})


def _error(path: str, field: str, message: str, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"path": path, "field": field, "message": message}
    if index is not None:
        out["index"] = index
    return out


def parse_answers(data: dict[str, Any]) -> dict[str, bool]:
    """``customer_id -> approved`` of a status body, in order (a repeated id: last wins)."""
    extra = sorted(k for k in data if k != "customers")
    if extra:
        raise _invalid(
            f"unknown key {extra[0]!r} (expected 'customers')",
            [_error(extra[0], extra[0], "unknown key")],
        )
    items = data.get("customers")
    if not isinstance(items, list):
        raise _invalid(
            "'customers' must be an array of {customer_id, approved}",
            [_error("customers", "customers", "must be an array")],
        )
    if len(items) > MAX_ANSWERS:
        raise ApiError(
            422,
            "invalid",
            f"at most {MAX_ANSWERS} customers a call, got {len(items)}",
            {"max_batch": MAX_ANSWERS},
        )
    answers: dict[str, bool] = {}
    errors: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"customers[{i}]"
        if not isinstance(item, dict):
            errors.append(_error(where, "", "must be an object {customer_id, approved}", i))
            continue
        unknown = sorted(k for k in item if k not in ("customer_id", "approved"))
        if unknown:
            errors.append(_error(f"{where}.{unknown[0]}", unknown[0], "unknown key", i))
            continue
        cid, ok = item.get("customer_id"), item.get("approved")
        if not isinstance(cid, str) or not cid or len(cid) > MAX_ID_LENGTH:
            message = f"must be a non-empty string of at most {MAX_ID_LENGTH} characters"
            errors.append(_error(f"{where}.customer_id", "customer_id", message, i))
            continue
        if not isinstance(ok, bool):
            errors.append(_error(f"{where}.approved", "approved", "must be true or false", i))
            continue
        answers.pop(cid, None)
        answers[cid] = ok
    if errors:
        first = errors[0]
        raise _invalid(
            f"{len(errors)} invalid answer{'s' if len(errors) != 1 else ''}, first at"
            f" {first['path']}: {first['message']}; nothing applied",
            errors,
            error_count=len(errors),
        )
    return answers


def _run_id(request: Request) -> tuple[str, int]:
    campaign_id = request.path_params["id"]
    text = request.path_params["run"]
    if not text.isdigit() or len(text) > 15:
        raise ApiError(
            404, "not_found", f"no run {text!r}", {"campaign_id": campaign_id, "run_id": text}
        )
    return campaign_id, int(text)


def _query(request: Request) -> tuple[str | None, int, int]:
    params = request.query_params
    unknown = sorted(k for k in params if k not in ("status", "cursor", "limit"))
    if unknown:
        raise _invalid(
            f"unknown query parameter {unknown[0]!r}", [_error(unknown[0], unknown[0], "unknown")]
        )
    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise _invalid(
            f"status must be one of {', '.join(STATUSES)}",
            [_error("status", "status", f"one of {', '.join(STATUSES)}")],
        )
    cursor_text = params.get("cursor") or None
    cursor = -1
    if cursor_text is not None:
        if not cursor_text.isdigit() or int(cursor_text) >= _MAX_CURSOR:
            raise _invalid(
                "cursor must be a next_cursor from an earlier page",
                [_error("cursor", "cursor", "not a cursor of this list")],
            )
        cursor = int(cursor_text)
    limit = DEFAULT_PAGE
    limit_text = params.get("limit")
    if limit_text is not None:
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
            raise _invalid(
                f"limit must be a whole number from 1 to {MAX_PAGE}",
                [_error("limit", "limit", f"1..{MAX_PAGE}")],
            )
        limit = int(limit_text)
    return status, cursor, limit


def _api_error(exc: ClearanceError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message, exc.details)


def clearance_routes(app: App) -> list[Route]:
    """The target list and status routes over ``app``."""

    async def get_customers(request: Request) -> JSONResponse:
        authorize(request, app.config.http.tokens, SCOPE)
        campaign_id, run_id = _run_id(request)
        status, cursor, limit = _query(request)
        try:
            page = await app.db.run_sync(
                lambda conn: list_targets_sync(
                    conn, campaign_id, run_id, status=status, cursor=cursor, limit=limit
                ),
                write=False,
            )
        except ClearanceError as exc:
            raise _api_error(exc) from None
        return JSONResponse(page)

    async def post_status(request: Request) -> JSONResponse:
        authorize(request, app.config.http.tokens, SCOPE)
        campaign_id, run_id = _run_id(request)
        answers = parse_answers(await read_json(request, app.config.http.max_body))
        now = app.clock.now()
        try:
            result = await app.db.run_sync(
                lambda conn: answer_sync(conn, campaign_id, run_id, answers, now=now)
            )
        except ClearanceError as exc:
            raise _api_error(exc) from None
        return JSONResponse(result)

    return [
        Route(CUSTOMERS, get_customers, methods=["GET"]),
        Route(STATUS, post_status, methods=["POST"]),
    ]
