"""Errors of the HTTP API: one JSON shape for every 4xx and 5xx answer.

Every refusal is ``{"error": {"code", "message", "details"}}``. A route raises
:class:`ApiError`; the app's handlers turn it, Starlette's own 404/405 and FastAPI's
request validation errors into that body. A validation error is a 422 whose details
list every bad field with its key path (``customers[3].email``), its ``loc`` and,
inside a batch, its ``index``::

    raise ApiError(422, "invalid", "2 invalid customers", {"errors": [...]})
    responses = error_responses(401, 403, 413, 422)   # for a route's OpenAPI entry
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promod.customers.records import ERROR_MESSAGES, loc_path

__all__ = [
    "MAX_REPORTED_ERRORS",
    "STATUS_CODES",
    "ApiError",
    "ErrorBody",
    "error_response",
    "error_responses",
    "install_error_handlers",
    "json_error_content",
]

MAX_REPORTED_ERRORS = 100
# Body keys whose items are records of a batch: their errors carry the record's index.
BATCH_KEYS = frozenset({"customers", "events"})
# Where FastAPI finds a parameter (the first part of its ``loc``).
PARAMETER_PLACES = frozenset({"path", "query", "header", "cookie"})

# The error codes of the API by the status they come with.
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}

# What each refusal means, for the OpenAPI document.
_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request: invalid JSON, text that is not UTF-8 (a lone surrogate).",
    401: "Missing or unknown bearer token.",
    403: "The token lacks the operation's scope.",
    404: "No such resource.",
    409: "The request conflicts with the resource's state.",
    413: "The body is larger than [http] max_body.",
    415: "The body is not application/json.",
    422: "A value does not match the schema (null included); details.errors names each field.",
    503: "The store takes no writes (a full or read-only disk); nothing was changed."
    " Retry-After says when to try again.",
}


class ApiError(HTTPException):
    """A refusal with its HTTP status, a stable code, a message and optional details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class ErrorDetail(BaseModel):
    """The refusal itself."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="stable machine-readable code, e.g. invalid, not_found")
    message: str
    details: Any = Field(description="more about the refusal (an object or null)")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer of the API."""

    model_config = ConfigDict(extra="forbid", title="Error")

    error: ErrorDetail


def error_responses(
    *statuses: int, notes: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entries of ``statuses``, each with the Error body.

    ``notes`` replaces the standard description of a status for one route.
    """
    notes = notes or {}
    return {
        status: {
            "model": ErrorBody,
            "description": notes.get(status) or _DESCRIPTIONS.get(status, "Refused."),
        }
        for status in statuses
    }


def json_error_content(document: dict[str, Any]) -> None:
    """Every 4xx/5xx answer in ``document`` is the JSON Error body, whatever the route."""
    ref = {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}
    for item in document.get("paths", {}).values():
        for operation in item.values():
            for status, response in operation.get("responses", {}).items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if str(status)[0] in "45" and schema in (None, ref):
                    response["content"] = {"application/json": {"schema": ref}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status, exc.code, exc.message, exc.details, headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, method not allowed) in the API's shape."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    code = STATUS_CODES.get(status, "bad_request" if status < 500 else "internal")
    if status == 404:
        message = f"no route {request.url.path}"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    headers = dict(exc.headers) if exc.headers else None
    if status == 405:
        headers = {**(headers or {}), "Allow": ", ".join(_allowed(request))}
    return error_response(status, code, message, None, headers)


def _allowed(request: Request) -> list[str]:
    """Every method some route takes on this path (Starlette names only the first route's)."""
    from starlette.routing import Match

    methods: set[str] = set()
    stack = list(request.app.routes)
    while stack:
        route = stack.pop()
        if hasattr(route, "original_router"):  # a router included by FastAPI
            stack.extend(route.original_router.routes)
            continue
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's (pydantic's) errors as ``{"path", "loc", "field", "message"[, "index"]}``."""
    out: list[dict[str, Any]] = []
    for error in errors:
        loc = list(error.get("loc", ()))
        where = loc[1:] if loc and loc[0] == "body" else loc
        ctx = error.get("ctx") or {}
        if error.get("type") in ("attribute_name", "consent_value") and "key" in ctx:
            where.append(ctx["key"])
        message = ERROR_MESSAGES.get(str(error.get("type")), str(error.get("msg", "invalid")))
        message = message.removeprefix("Value error, ")
        entry: dict[str, Any] = {"path": loc_path(where), "loc": loc, "message": message}
        if loc and loc[0] in PARAMETER_PLACES:
            entry["field"] = loc_path(where[1:])  # the parameter's name
        elif len(where) >= 2 and where[0] in BATCH_KEYS and isinstance(where[1], int):
            entry["index"] = where[1]
            entry["field"] = loc_path(where[2:])
        else:
            entry["field"] = loc_path(where)
        out.append(entry)
    return out


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc.errors())
    if not errors:
        return error_response(422, "invalid", "the request is invalid")
    first = errors[0]
    count = len(errors)
    where = first["path"] or "the body"
    return error_response(
        422,
        "invalid",
        f"{count} invalid value{'s' if count != 1 else ''}, first at {where}:"
        f" {first['message']}; nothing stored",
        {"errors": errors[:MAX_REPORTED_ERRORS], "error_count": count},
    )


def install_error_handlers(app: Any) -> None:
    """Register the handlers on a FastAPI (or Starlette) application."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
