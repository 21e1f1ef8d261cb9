"""One-click unsubscribe (RFC 8058) for the link in every marketing mail's footer.

``GET /v1/unsubscribe?token=T`` only shows a page with a confirm button (mail
scanners fetch links; a GET never unsubscribes). ``POST`` with the form body
``List-Unsubscribe=One-Click`` — what mail providers send for the
``List-Unsubscribe-Post`` header, and what the page's button sends — withdraws the
consent named in the signed token, with time and source ``unsubscribe``, and
suppresses the address (:mod:`promod.notify.unsubscribe`). No bearer token: the
signed link is the authorisation, and it cannot be made for another customer::

    POST /v1/unsubscribe?token=T   body: List-Unsubscribe=One-Click   -> 200
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from promod.http.body import read_body
from promod.http.errors import ApiError

__all__ = ["MAX_TOKEN_LENGTH", "unsubscribe_routes"]

MAX_TOKEN_LENGTH = 2048
ONE_CLICK = "One-Click"

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


def _token(request: Request) -> str:
    token = request.query_params.get("token")
    if not token:
        raise ApiError(400, "bad_request", "the unsubscribe link has no token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise ApiError(400, "bad_request", "the unsubscribe token is not valid")
    return token


def _one_click(body: bytes, content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        text = body.decode("utf-8", "replace")
        return 'name="List-Unsubscribe"' in text and ONE_CLICK in text
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return False
    # A trailing newline after the body (some senders add one) is not a different answer.
    return ONE_CLICK in [value.strip() for value in form.get("List-Unsubscribe", [])]


def unsubscribe_routes(app: Any) -> list[Route]:
    """GET (confirmation page) and POST (one-click opt-out) of ``/v1/unsubscribe``."""
    from promod.notify.unsubscribe import (
        InvalidToken,
        record_unsubscribe_sync,
        unsubscribe_key_sync,
        verify_unsubscribe_token,
    )

    async def verify(token: str) -> tuple[str, str | None]:
        key = await app.db.run_sync(unsubscribe_key_sync)
        try:
            return verify_unsubscribe_token(key, token)
        except InvalidToken:
            raise ApiError(400, "bad_request", "the unsubscribe token is not valid") from None

    async def confirm_page(request: Request) -> Response:
        token = _token(request)
        _customer_id, consent = await verify(token)
        action = f"/v1/unsubscribe?token={quote(token, safe='')}"
        form = (
            f'<form method="post" action="{html.escape(action)}">'
            f'<input type="hidden" name="List-Unsubscribe" value="{ONE_CLICK}">'
            '<button type="submit">Unsubscribe</button></form>'
        )
        what = f"messages that need your '{consent}' consent" if consent else "these messages"
        return HTMLResponse(_page("Unsubscribe", f"Stop receiving {what}?", form))

    async def one_click(request: Request) -> Response:
        token = _token(request)
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

    async def unsubscribe(request: Request) -> Response:
        if request.method == "POST":
            return await one_click(request)
        return await confirm_page(request)

    return [Route("/v1/unsubscribe", unsubscribe, methods=["GET", "POST"])]
