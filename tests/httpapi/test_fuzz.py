"""Fuzz: bodies drawn from the published schemas, mangled or junk, never get a 5xx."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.httpapi.conftest import TOKENS
from tests.httpapi.test_openapi import DOC, SCHEMA

pytestmark = pytest.mark.anyio

PATH_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="/?#"),
    min_size=1,
    max_size=20,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _operations() -> list[tuple[str, str, st.SearchStrategy[Any] | None]]:
    ops = []
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            media = op.get("requestBody", {}).get("content", {})
            bodies = None
            if "application/json" in media:
                bodies = SCHEMA[path][method.upper()].as_strategy().map(lambda case: case.body)
            ops.append((path, method, bodies))
    return ops


OPERATIONS = _operations()


def _exact(o: Any) -> Any:
    if isinstance(o, Decimal):
        return float(o)
    raise TypeError(type(o).__name__)


def _mangle(body: Any) -> st.SearchStrategy[Any]:
    """The body, or one of its keys set to null or a junk value."""
    if not isinstance(body, dict) or not body:
        return st.just(body)
    return st.one_of(
        st.just(body),
        st.tuples(st.sampled_from(sorted(body)), st.none() | JSON_VALUES).map(
            lambda kv: {**body, kv[0]: kv[1]}
        ),
    )


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes, dict[str, str]]:
    path, method, schema = draw(st.sampled_from(OPERATIONS))
    for name in ("{customer_id}", "{id}", "{name}"):
        path = path.replace(name, draw(PATH_TEXT))
    path = path.replace("{run}", str(draw(st.integers(-5, 10**16))))
    body: Any = draw(schema.flatmap(_mangle) if schema is not None else JSON_VALUES)
    raw = draw(
        st.sampled_from(["json", "json", "json", "bytes"]).flatmap(
            lambda kind: (
                st.just(json.dumps(body, default=_exact).encode())
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
