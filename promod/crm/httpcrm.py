"""The built-in ``http`` connector: a JSON REST CRM.

``GET {url}{recipients_path}?limit=N[&cursor=C]`` answers
``{"records": [...], "next": C | null}``, page after page; suppressions and responses
are ``POST``ed as ``{"connector": NAME, "records": [...]}`` (responses with ``"day"``).
Every request carries ``Authorization: Bearer TOKEN`` (``auth = "bearer"``) or a
``Promod-Signature: t=UNIX,v1=HEX`` HMAC-SHA256 of ``f"{t}.{body}"`` (``auth =
"hmac"``, the body of a GET being its path and query). A refused connection, a
timeout, 5xx and 429 are retried up to ``max_attempts`` times, pausing ``retry``
then doubling (with jitter) up to ``max_retry``; a ``Retry-After`` header is
honoured. Other 4xx answers fail at once::

    [crm.sales]
    connector = "http"
    url = "https://crm.example.org/api/lists/newsletter"
    auth = "bearer"
    token_env = "PROMOD_CRM_TOKEN"
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

import anyio
import httpx
from pydantic import Field, ValidationInfo

from promod.crm.connector import (
    PermanentCrmError,
    ResponseRecord,
    SuppressionRecord,
    TemporaryCrmError,
)
from promod.logs import get_logger
from promod.notify.webhook import parse_retry_after, sign
from promod.schema import Model, Problems

__all__ = ["HttpConnector", "HttpConnectorType", "HttpOptions"]

log = get_logger("promod.crm.http")

MAX_PAGES = 1_000_000


class HttpOptions(Model):
    """``[crm.NAME]`` options of the ``http`` connector."""

    url: str = Field(pattern=r"^https?://", description="base URL of the CRM list")
    recipients_path: str = "/recipients"
    suppressions_path: str = "/suppressions"
    responses_path: str = "/responses"
    auth: Literal["bearer", "hmac", "none"] = "bearer"
    token: str | None = Field(default=None, repr=False)
    token_env: str | None = None
    secret: str | None = Field(default=None, repr=False)
    secret_env: str | None = None
    page_size: int = Field(default=1000, ge=1, le=10_000)
    timeout: float = Field(default=10.0, gt=0, le=300)
    max_attempts: int = Field(default=5, ge=1, le=20)
    retry: float = Field(default=1.0, gt=0, le=300, description="first pause, seconds")
    max_retry: float = Field(default=60.0, gt=0, le=3600)

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: HttpOptions | None, info: ValidationInfo
    ) -> Problems:
        auth = raw.get("auth", "bearer")
        if auth == "bearer" and not (raw.get("token") or raw.get("token_env")):
            return [(("token",), "auth = bearer needs token or token_env")]
        if auth == "hmac" and not (raw.get("secret") or raw.get("secret_env")):
            return [(("secret",), "auth = hmac needs secret or secret_env")]
        return []


def _from_env(value: str | None, env: str | None, what: str) -> str | None:
    if value:
        return value
    if env:
        found = os.environ.get(env)
        if not found:
            raise ValueError(f"{what}: environment variable {env} is not set")
        return found
    return None


class HttpConnector:
    def __init__(self, name: str, options: HttpOptions) -> None:
        self.name = name
        self.options = options
        self._token = _from_env(options.token, options.token_env, "token_env")
        secret = _from_env(options.secret, options.secret_env, "secret_env")
        self._secret = secret.encode() if secret else None
        self._client = httpx.AsyncClient(timeout=options.timeout)
        self.attempts = 0  # requests made, retries included (for status and tests)

    def _headers(self, signed: bytes) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.options.auth == "bearer" and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        elif self.options.auth == "hmac" and self._secret:
            headers["Promod-Signature"] = sign(self._secret, signed, int(time.time()))
        return headers

    def _pause(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.options.max_retry, self.options.retry * 2 ** (attempt - 1))
        backoff *= 0.5 + random.random() / 2  # jitter
        if retry_after is not None:
            return float(min(max(backoff, retry_after), max(self.options.max_retry, retry_after)))
        return float(backoff)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        url = self.options.url.rstrip("/") + path
        content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        request = self._client.build_request(
            method,
            url,
            params=params,
            content=content or None,
            headers={"Content-Type": "application/json"} if body is not None else None,
        )
        signed = content if body is not None else str(request.url.raw_path, "ascii").encode()
        request.headers.update(self._headers(signed))
        last: TemporaryCrmError | None = None
        for attempt in range(1, self.options.max_attempts + 1):
            self.attempts += 1
            try:
                answer = await self._client.send(request)
            except httpx.HTTPError as exc:
                last = TemporaryCrmError(f"{method} {path}: {type(exc).__name__}: {exc}")
            else:
                if answer.status_code == 429 or answer.status_code >= 500:
                    retry_after = parse_retry_after(answer.headers.get("Retry-After"))
                    last = TemporaryCrmError(
                        f"{method} {path}: HTTP {answer.status_code}", retry_after
                    )
                elif answer.status_code >= 400:
                    raise PermanentCrmError(f"{method} {path}: HTTP {answer.status_code}")
                else:
                    if not answer.content:
                        return None
                    try:
                        return answer.json()
                    except ValueError:
                        raise PermanentCrmError(f"{method} {path}: not JSON") from None
            if attempt < self.options.max_attempts:
                pause = self._pause(attempt, last.retry_after)
                log.warning(
                    "crm_retry",
                    connector=self.name,
                    attempt=attempt,
                    error=str(last),
                    pause=round(pause, 3),
                )
                await anyio.sleep(pause)
        assert last is not None
        raise TemporaryCrmError(
            f"{last} (after {self.options.max_attempts} attempts)", last.retry_after
        )

    async def fetch(self) -> AsyncIterator[Sequence[Mapping[str, Any]]]:
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"limit": self.options.page_size}
            if cursor is not None:
                params["cursor"] = cursor
            page = await self._request("GET", self.options.recipients_path, params=params)
            if not isinstance(page, dict) or not isinstance(page.get("records"), list):
                raise PermanentCrmError("a recipients page must be {records: [...], next}")
            yield page["records"]
            following = page.get("next")
            if following is None or following == "":
                return
            cursor = str(following)
        raise PermanentCrmError(f"more than {MAX_PAGES} pages")

    async def export_suppressions(self, records: Sequence[SuppressionRecord]) -> None:
        body = {"connector": self.name, "records": [r.to_dict() for r in records]}
        await self._request("POST", self.options.suppressions_path, body=body)

    async def export_responses(self, records: Sequence[ResponseRecord], *, day: str) -> None:
        body = {"connector": self.name, "day": day, "records": [r.to_dict() for r in records]}
        await self._request("POST", self.options.responses_path, body=body)

    async def close(self) -> None:
        await self._client.aclose()


class HttpConnectorType:
    type = "http"
    options_model = HttpOptions

    def create(self, name: str, options: Mapping[str, Any] | HttpOptions) -> HttpConnector:
        model = options if isinstance(options, HttpOptions) else HttpOptions(**dict(options))
        return HttpConnector(name, model)
