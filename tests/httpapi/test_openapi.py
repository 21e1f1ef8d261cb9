"""``/openapi.json`` matches the router, and every example satisfies its schema."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.routing import Route

from promod.app import App
from promod.http.routes import build_app
from tests.httpapi.schema import errors

pytestmark = pytest.mark.anyio


def _router_operations(app: App) -> set[tuple[str, str]]:
    ops = set()
    for route in build_app(app).routes:
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                ops.add((route.path, method.lower()))
    return ops


async def test_document_lists_exactly_the_routes(app: App, client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert documented == _router_operations(app), (
        "routes and /openapi.json differ; add the route's path to promod/http/openapi.py"
    )


def _examples(doc: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any]]]:
    found = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            for media in op.get("requestBody", {}).get("content", {}).values():
                if "example" in media:
                    found.append((f"{where} request", media["example"], media["schema"]))
            for status, response in op["responses"].items():
                for media in response.get("content", {}).values():
                    if "example" in media:
                        found.append((f"{where} {status}", media["example"], media["schema"]))
    return found


async def test_every_example_satisfies_its_schema(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    examples = _examples(doc)
    assert len(examples) >= 8
    for where, example, schema in examples:
        assert errors(example, schema, doc) == [], where


async def test_every_operation_has_responses_and_known_refs(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    text = repr(doc)
    for name in doc["components"]["schemas"]:
        assert f"#/components/schemas/{name}" in text or name == "Error"
    for item in doc["paths"].values():
        for op in item.values():
            assert op["responses"]
            if "security" in op:
                assert op["x-promod-scope"] in {
                    "customers:write",
                    "events:write",
                    "clearance",
                    "redeem",
                    "read",
                }


async def test_request_examples_are_accepted_by_the_api(
    app: App, client: httpx.AsyncClient
) -> None:
    """The documented request bodies really work (the example is the contract)."""
    from tests.httpapi.conftest import auth

    doc = (await client.get("/openapi.json")).json()
    paths = doc["paths"]

    def example(path: str, method: str) -> Any:
        return paths[path][method]["requestBody"]["content"]["application/json"]["example"]

    r = await client.put(
        "/v1/customers/c42", json=example("/v1/customers/{customer_id}", "put"), headers=auth()
    )
    assert r.status_code in (200, 201), r.text
    r = await client.post(
        "/v1/customers:batch", json=example("/v1/customers:batch", "post"), headers=auth()
    )
    assert r.status_code == 200, r.text
    r = await client.post("/v1/events", json=example("/v1/events", "post"), headers=auth())
    assert r.status_code == 200, r.text
    for response in (r,):
        schema = paths["/v1/events"]["post"]["responses"]["200"]["content"]["application/json"]
        assert errors(response.json(), schema["schema"], doc) == []
