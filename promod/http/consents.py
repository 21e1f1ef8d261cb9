"""A customer's consents: the API for the site's customer area, and the preference page.

``GET /v1/customers/{customer_id}/consents`` (scope ``read``) answers every consent
with when and by what it last changed, and the latest changes;
``PUT /v1/customers/{customer_id}/consents`` (scope ``customers:write``) grants or
withdraws the named ones (``{"consents": {"loyalty_reminders": false}}``; a value
that is not true or false, null included, is refused with its key), source ``api``.

``GET /v1/preferences?token=T`` is the page linked from every customer message's
footer: each consent with a toggle, a save button and "unsubscribe from
everything". ``POST`` (the page's form: ``action`` = save | everything and
``consent:NAME`` = on | off per consent shown) writes the toggles with source ``page``;
the signed token is the authorisation (promod.notify.unsubscribe), no bearer
token; a token that is not genuine is a 403::

    PUT /v1/customers/c42/consents   {"consents": {"loyalty_reminders": false}}  -> 200
"""

from __future__ import annotations

import html
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from promod.customers.records import Consents
from promod.http.body import ApiRoute, read_body, scope
from promod.http.customers import CustomerPath
from promod.http.errors import ApiError, error_responses
from promod.http.unsubscribe import _HTML, _PAGE, Token, _form
from promod.notify.consents import change_consents, consents_view, unsubscribe_everything
from promod.notify.unsubscribe import InvalidToken, unsubscribe_key_sync, verify_preferences_token

if TYPE_CHECKING:
    from promod.app import App

__all__ = ["consent_router"]

API_SOURCE = "api"
PAGE_SOURCE = "page"
FIELD_PREFIX = "consent:"  # the page's field of a consent: consent:NAME = on | off


class ConsentState(BaseModel):
    granted: bool
    updated_at: str = Field(description="when granted last changed (ISO-8601 UTC)")
    source: str = Field(description="what changed it: page, unsubscribe, api, import, crm:NAME")


class ConsentChange(BaseModel):
    consent: str
    granted: bool
    source: str
    changed_at: str


class ConsentsView(BaseModel):
    """A customer's consents and their latest changes, newest first."""

    customer_id: str
    consents: dict[str, ConsentState]
    history: list[ConsentChange]


class ConsentsBody(BaseModel):
    """The consents to grant (true) or withdraw (false); the others stay as they are."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"consents": {"loyalty_reminders": False}}]},
    )

    consents: Consents


_FORM_SCHEMA = {
    "type": "object",
    "properties": {"action": {"type": "string", "enum": ["save", "everything"]}},
    "patternProperties": {
        f"^{FIELD_PREFIX}": {
            "type": "string",
            "enum": ["on", "off"],
            "description": "one field per consent shown: on or off",
        }
    },
    "required": ["action"],
    "additionalProperties": False,
}
_NOTES = {
    400: "The form is not the page's form.",
    403: "The token is not genuine (not made by this daemon).",
    404: "The customer of the token is gone.",
}
_STYLE = (
    "<style>label{display:flex;justify-content:space-between;padding:.5em 0;"
    "border-bottom:1px solid #ddd}button{margin:1em .5em 0 0}</style>"
)


def _preferences_page(view: dict[str, Any], token: str, note: str = "") -> str:
    action = html.escape(f"/v1/preferences?token={quote(token, safe='')}", quote=True)
    rows = []
    for name, state in sorted(view["consents"].items()):
        field = html.escape(FIELD_PREFIX + name, quote=True)
        ident = html.escape(f"consent-{name}", quote=True)
        on, off = (" checked", "") if state["granted"] else ("", " checked")
        rows.append(
            f'<fieldset role="radiogroup"><legend>{html.escape(name)}</legend>'
            f'<label><input type="radio" name="{field}" value="on" id="{ident}-on"{on}>'
            " On</label> "
            f'<label><input type="radio" name="{field}" value="off" id="{ident}-off"{off}>'
            " Off</label></fieldset>"
        )
    if not rows:
        rows.append("<p>You have given no consents.</p>")
    form = (
        f'{_STYLE}<form method="post" action="{action}">{"".join(rows)}'
        '<button type="submit" name="action" value="save" id="save">Save</button>'
        '<button type="submit" name="action" value="everything" id="everything">'
        "Unsubscribe from everything</button></form>"
    )
    text = note or "Choose which messages you want to receive."
    return _PAGE.format(title="Your email preferences", text=html.escape(text), form=form)


def _toggles(fields: dict[str, list[str]]) -> tuple[str, dict[str, bool]] | None:
    """The form's action and ``{consent: on}``; None when it is not the page's form."""
    if any(len(values) != 1 for values in fields.values()):
        return None
    action = fields.get("action", [""])[0]
    if action not in ("save", "everything"):
        return None
    toggles: dict[str, bool] = {}
    for key, (value,) in fields.items():
        if key == "action":
            continue
        if not key.startswith(FIELD_PREFIX) or value not in ("on", "off"):
            return None
        toggles[key[len(FIELD_PREFIX) :]] = value == "on"
    return action, toggles


def consent_router(app: App) -> APIRouter:
    """The consent API and the preference page over ``app``."""
    router = APIRouter(route_class=ApiRoute, tags=["consents"])

    @router.get(
        "/v1/customers/{customer_id}/consents",
        operation_id="getCustomerConsents",
        summary="A customer's consents and their latest changes",
        response_model=ConsentsView,
        responses=error_responses(401, 403, 404, 422, 503),
        openapi_extra=scope("read"),
    )
    async def get_consents(customer_id: CustomerPath) -> JSONResponse:
        view = await app.db.run(partial(consents_view, customer_id=customer_id), write=False)
        if view is None:
            raise ApiError(404, "not_found", f"no customer {customer_id!r}")
        return JSONResponse(view)

    @router.put(
        "/v1/customers/{customer_id}/consents",
        operation_id="putCustomerConsents",
        summary="Grant or withdraw a customer's consents",
        response_model=ConsentsView,
        responses=error_responses(400, 401, 403, 404, 413, 415, 422, 503),
        openapi_extra=scope("customers:write"),
    )
    async def put_consents(
        customer_id: CustomerPath, body: Annotated[ConsentsBody, Body()]
    ) -> JSONResponse:
        view = await app.db.run(
            partial(
                change_consents,
                customer_id=customer_id,
                changes=dict(body.consents),
                source=API_SOURCE,
                now=app.clock.now(),
            )
        )
        if view is None:
            raise ApiError(404, "not_found", f"no customer {customer_id!r}")
        return JSONResponse(view)

    async def verify(token: str) -> str:
        key = await app.db.run(unsubscribe_key_sync)
        try:
            return verify_preferences_token(key, token)
        except InvalidToken:
            raise ApiError(403, "forbidden", "the preferences link is not valid") from None

    @router.get(
        "/v1/preferences",
        operation_id="preferencesPage",
        summary="The preference page of a footer link",
        response_class=HTMLResponse,
        responses={
            200: {"content": _HTML, "description": "Each consent with a toggle"},
            **error_responses(403, 404, 422, notes=_NOTES),
        },
    )
    async def preferences_page(token: Token) -> Response:
        customer_id = await verify(token)
        view = await app.db.run(partial(consents_view, customer_id=customer_id), write=False)
        if view is None:
            raise ApiError(404, "not_found", "no such customer")
        return HTMLResponse(_preferences_page(view, token))

    @router.post(
        "/v1/preferences",
        operation_id="savePreferences",
        summary="Save the preference page's toggles, or unsubscribe from everything",
        response_class=HTMLResponse,
        responses={
            200: {"content": _HTML, "description": "Saved; the page again"},
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
    async def save_preferences(request: Request, token: Token) -> Response:
        body = await read_body(request, app.config.http.max_body)
        fields = _form(body, request.headers.get("content-type", ""))
        form = None if fields is None else _toggles(fields)
        if form is None:
            raise ApiError(
                400,
                "bad_request",
                "expected the preference page's form: action = save | everything and"
                f" {FIELD_PREFIX}NAME = on | off",
            )
        action, toggles = form
        customer_id = await verify(token)
        now = app.clock.now()
        current = await app.db.run(partial(consents_view, customer_id=customer_id), write=False)
        if current is None:
            raise ApiError(404, "not_found", "no such customer")
        if action == "everything":
            view = await app.db.run(
                partial(
                    unsubscribe_everything, customer_id=customer_id, source=PAGE_SOURCE, now=now
                )
            )
            note = "You are unsubscribed from everything."
        else:
            view = await app.db.run(
                partial(
                    change_consents,
                    customer_id=customer_id,
                    changes={k: v for k, v in toggles.items() if k in current["consents"]},
                    source=PAGE_SOURCE,
                    now=now,
                )
            )
            note = "Your preferences are saved."
        if view is None:
            raise ApiError(404, "not_found", "no such customer")
        return HTMLResponse(_preferences_page(view, token, note))

    return router
