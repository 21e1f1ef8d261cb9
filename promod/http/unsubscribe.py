"""One-click unsubscribe (RFC 8058) for the link in every marketing mail's footer.

``GET /v1/unsubscribe?token=T`` only shows a page with a confirm button (mail
scanners fetch links; a GET never unsubscribes). ``POST`` with the form body
``List-Unsubscribe=One-Click`` — what mail providers send for the
``List-Unsubscribe-Post`` header, and what the page's button sends — withdraws the
consent named in the signed token, with time and source ``unsubscribe``, and
suppresses the address (:mod:`promod.notify.unsubscribe`). No bearer token: the
signed link is the authorisation, and it cannot be made for another customer; a
token that is not genuine is a 403::

    POST /v1/unsubscribe?token=T   body: List-Unsubscribe=One-Click   -> 200
"""

from __future__ import annotations

import html
from email import policy
from email.parser import BytesParser
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from promod.http.body import ApiRoute, read_body
from promod.http.errors import ApiError, error_responses

__all__ = ["MAX_TOKEN_LENGTH", "TOKEN_PATTERN", "unsubscribe_router"]

MAX_TOKEN_LENGTH = 2048
TOKEN_PATTERN = r"^[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]+$"  # noqa: S105 (a pattern, not a secret)
ONE_CLICK = "One-Click"

Token = Annotated[
    str,
    Query(
        min_length=3,
        max_length=MAX_TOKEN_LENGTH,
        pattern=TOKEN_PATTERN,
        description="the signed token of the link in the mail",
    ),
]


class OneClickForm(BaseModel):
    """The RFC 8058 one-click body."""

    model_config = ConfigDict(extra="forbid")

    list_unsubscribe: Literal["One-Click"] = Field(alias="List-Unsubscribe")


class Unsubscribed(BaseModel):
    unsubscribed: bool
    consent: str | None = Field(description="the consent withdrawn; null: all marketing")


_NOTES = {
    400: "The body is not List-Unsubscribe=One-Click.",
    403: "The token is not genuine (not made by this daemon).",
    404: "The customer of the token is gone.",
}
_FORM_SCHEMA = OneClickForm.model_json_schema(by_alias=True)
_HTML = {"text/html": {"schema": {"type": "string"}}}


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 4em auto">
<h1>{title}</h1><p>{text}</p>{form}</body></html>
"""


def _page(title: str, text: str, form: str = "") -> str:
    return _PAGE.format(title=html.escape(title), text=html.escape(text), form=form)


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _form(body: bytes, content_type: str) -> dict[str, list[str]] | None:
    """The fields of a urlencoded or multipart form body; None when it is not one."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
        message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
        if not message.is_multipart():
            return None
        fields: dict[str, list[str]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if not isinstance(name, str) or not isinstance(payload, bytes):
                return None
            fields.setdefault(name, []).append(payload.decode("utf-8", "replace"))
        return fields
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return None


def _one_click(body: bytes, content_type: str) -> bool:
    """The body is exactly the field ``List-Unsubscribe=One-Click`` (RFC 8058).

    A trailing newline after the value (some senders add one) is not a different answer.
    """
    fields = _form(body, content_type)
    if fields is None or set(fields) != {"List-Unsubscribe"}:
        return False
    return [value.strip() for value in fields["List-Unsubscribe"]] == [ONE_CLICK]


def unsubscribe_router(app: Any) -> APIRouter:
    """GET (confirmation page) and POST (one-click opt-out) of ``/v1/unsubscribe``."""
    from promod.notify.unsubscribe import (
        InvalidToken,
        record_unsubscribe_sync,
        unsubscribe_key_sync,
        verify_unsubscribe_token,
    )

    router = APIRouter(route_class=ApiRoute, tags=["unsubscribe"])

    async def verify(token: str) -> tuple[str, str | None]:
        key = await app.db.run_sync(unsubscribe_key_sync)
        try:
            return verify_unsubscribe_token(key, token)
        except InvalidToken:
            raise ApiError(403, "forbidden", "the unsubscribe link is not valid") from None

    @router.get(
        "/v1/unsubscribe",
        operation_id="unsubscribePage",
        summary="The confirmation page of an unsubscribe link",
        response_class=HTMLResponse,
        responses={
            200: {"content": _HTML, "description": "A page with a confirm button"},
            **error_responses(403, 422, notes=_NOTES),
        },
    )
    async def confirm_page(token: Token) -> Response:
        _customer_id, consent = await verify(token)
        action = f"/v1/unsubscribe?token={quote(token, safe='')}"
        form = (
            f'<form method="post" action="{html.escape(action)}">'
            f'<input type="hidden" name="List-Unsubscribe" value="{ONE_CLICK}">'
            '<button type="submit">Unsubscribe</button></form>'
        )
        what = f"messages that need your '{consent}' consent" if consent else "these messages"
        return HTMLResponse(_page("Unsubscribe", f"Stop receiving {what}?", form))

    @router.post(
        "/v1/unsubscribe",
        operation_id="unsubscribe",
        summary="One-click unsubscribe (RFC 8058)",
        response_model=Unsubscribed,
        responses={
            200: {"content": _HTML, "description": "Unsubscribed (JSON, or a page for browsers)"},
            **error_responses(400, 403, 404, 413, 422, 503, notes=_NOTES),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {"schema": _FORM_SCHEMA},
                    "multipart/form-data": {"schema": _FORM_SCHEMA},
                },
            }
        },
    )
    async def one_click(request: Request, token: Token) -> Response:
        body = await read_body(request, app.config.http.max_body)
        if not _one_click(body, request.headers.get("content-type", "")):
            raise ApiError(
                400,
                "bad_request",
                "expected the form body List-Unsubscribe=One-Click (RFC 8058)",
            )
        customer_id, consent = await verify(token)
        now = app.clock.now()
        found = await app.db.run_sync(
            lambda conn: record_unsubscribe_sync(
                conn, customer_id, consent, now=now, source="unsubscribe"
            )
        )
        if not found:
            raise ApiError(404, "not_found", "no such customer")
        if _wants_html(request):
            return HTMLResponse(_page("Unsubscribed", "You will no longer receive these messages."))
        return JSONResponse({"unsubscribed": True, "consent": consent})

    return router
