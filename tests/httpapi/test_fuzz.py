"""Fuzz: bodies generated from the OpenAPI schemas (and junk) never make the API answer 5xx."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promod.http.openapi import openapi_document
from tests.httpapi.conftest import TOKENS
from tests.httpapi.schema import JSON_VALUES, from_schema

pytestmark = pytest.mark.anyio

DOC = openapi_document("http://promod.test", "0")
PATH_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="/?#"),
    min_size=1,
    max_size=20,
)


def _operations() -> list[tuple[str, str, dict[str, Any] | None]]:
    ops = []
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            media = op.get("requestBody", {}).get("content", {})
            schema = media.get("application/json", {}).get("schema")
            ops.append((path, method, schema))
    return ops


OPERATIONS = _operations()


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, Decimal):
            return float(o)
        return super().default(o)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes, dict[str, str]]:
    path, method, schema = draw(st.sampled_from(OPERATIONS))
    if "{customer_id}" in path:
        path = path.replace("{customer_id}", draw(PATH_TEXT))
    if "{name}" in path:
        path = path.replace("{name}", draw(PATH_TEXT))
    body: Any = draw(from_schema(schema, DOC) if schema else JSON_VALUES)
    raw = draw(
        st.sampled_from(["json", "json", "json", "bytes"]).flatmap(
            lambda kind: (
                st.just(json.dumps(body, cls=_Encoder).encode())
                if kind == "json"
                else st.binary(max_size=64)
            )
        )
    )
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain"]))}
    token = draw(st.sampled_from([*TOKENS, None]))
    if token:
        headers["Authorization"] = f"Bearer {TOKENS[token][0]}"
    return path, method, raw, headers


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
async def test_generated_requests_never_get_a_5xx(
    client: httpx.AsyncClient, request: tuple[str, str, bytes, dict[str, str]]
) -> None:
    path, method, raw, headers = request
    params = {"token": "abc.def"} if path == "/v1/unsubscribe" else None
    response = await client.request(method, path, content=raw, headers=headers, params=params)
    assert response.status_code < 500, (method, path, raw, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "details"}
