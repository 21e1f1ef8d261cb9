"""``/openapi.json`` is generated from the models, and the models keep to it.

Checked with the ecosystem's validators: ``jsonschema`` for the document's schemas
and the API's answers, ``hypothesis-jsonschema`` for bodies drawn from the published
schemas (every one of them must be accepted: a limit the server enforces must be in
the schema).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import jsonschema
import pytest
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promod.http.routes import build_app
from tests.httpapi.conftest import ApiApp, auth, make_config

pytestmark = pytest.mark.anyio

SCOPES = {"customers:write", "events:write", "clearance", "redeem", "read"}


def _document() -> dict[str, Any]:
    from promod.clock import ManualClock

    app = ApiApp(config=make_config(), db=None, clock=ManualClock(start=0))  # type: ignore[arg-type]
    return build_app(app).openapi()


DOC = _document()


def _schema(ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    """A self-contained JSON Schema (2020-12) for a schema of the document."""
    return {**ref_or_schema, "components": DOC["components"]}


def _response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    response = DOC["paths"][path][method]["responses"][str(status)]
    return _schema(response["content"]["application/json"]["schema"])


def _request_schema(path: str, method: str) -> dict[str, Any]:
    body = DOC["paths"][path][method]["requestBody"]
    return _schema(body["content"]["application/json"]["schema"])


async def test_document_lists_exactly_the_routes(app: ApiApp, client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert documented == _routed(build_app(app).routes)


def _routed(routes: list[Any]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, APIRoute):
            out.update((route.path_format, method.lower()) for method in route.methods)
        elif hasattr(route, "original_router"):  # an included router
            out |= _routed(route.original_router.routes)
    return out


def test_every_schema_of_the_document_is_valid_json_schema() -> None:
    for name, schema in DOC["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema), name
    for item in DOC["paths"].values():
        for op in item.values():
            for param in op.get("parameters", []):
                jsonschema.Draft202012Validator.check_schema(param["schema"])


def test_every_operation_lists_its_refusals_and_scope() -> None:
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            assert op["operationId"], where
            statuses = set(op["responses"])
            if "x-promod-scope" in op:
                assert op["x-promod-scope"] in SCOPES, where
                assert op["security"] == [{"bearer": []}], where
                assert {"401", "403"} <= statuses, where
            if "requestBody" in op or op.get("parameters"):
                assert "422" in statuses, where
            if "requestBody" in op:
                assert "413" in statuses, where
            for status, response in op["responses"].items():
                if status.startswith("4"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, where


def test_links_chain_customer_events_and_clearance() -> None:
    put = DOC["paths"]["/v1/customers/{customer_id}"]["put"]["responses"]
    assert set(put["201"]["links"]) == {"GetRewards", "PostEvents"}
    assert put["200"]["links"]["PostEvents"]["operationId"] == "postEvents"
    page = DOC["paths"]["/v1/campaigns/{id}/runs/{run}/customers"]["get"]["responses"]["200"]
    assert page["links"]["PostStatus"]["operationId"] == "postClearanceStatus"
    operations = {op["operationId"] for item in DOC["paths"].values() for op in item.values()}
    for item in DOC["paths"].values():
        for op in item.values():
            for response in op["responses"].values():
                for link in response.get("links", {}).values():
                    assert link["operationId"] in operations


def test_limits_the_server_enforces_are_in_the_schema() -> None:
    customer = DOC["components"]["schemas"]["Customer"]["properties"]["id"]
    assert customer["maxLength"] == 128 and "x00-\\x1f" in customer["pattern"]
    batch = DOC["components"]["schemas"]["CustomersBatch"]["properties"]["customers"]
    assert batch["maxItems"] == 10_000
    events = DOC["components"]["schemas"]["EventsBatch"]["properties"]["events"]
    assert events["maxItems"] == 10_000
    params = DOC["paths"]["/v1/campaigns/{id}/runs/{run}/customers"]["get"]["parameters"]
    cursor = next(p for p in params if p["name"] == "cursor")
    assert cursor["schema"]["anyOf"][0]["pattern"] == "^[0-9]{1,15}$"
    consents = DOC["components"]["schemas"]["CustomerBody"]["properties"]["consents"]
    assert consents["type"] == "object"  # so null is refused
    unsub = DOC["paths"]["/v1/unsubscribe"]["post"]["parameters"][0]["schema"]
    assert unsub["maxLength"] == 2048 and unsub["pattern"]


def _dumps(value: Any) -> bytes:
    def exact(o: Any) -> Any:
        if isinstance(o, Decimal):
            return float(o)
        raise TypeError(type(o).__name__)

    return json.dumps(value, default=exact).encode()


SCHEMA = schemathesis.openapi.from_dict(DOC)
BODIES = st.one_of(
    *(
        SCHEMA[path]["POST"].as_strategy().map(lambda case, path=path: (path, case.body))
        for path in ("/v1/customers:batch", "/v1/events", "/v1/redemptions")
    )
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
@given(body=BODIES)
async def test_bodies_drawn_from_the_schema_are_accepted(
    app: ApiApp, client: httpx.AsyncClient, body: tuple[str, Any]
) -> None:
    async def redeem(*args: Any) -> dict[str, Any]:
        return {"redeemed": False, "reason": "invalid_code"}

    app.extras["redeem"] = redeem
    path, data = body
    h = {**auth(), "Content-Type": "application/json"}
    r = await client.post(path, content=_dumps(data), headers=h)
    assert r.status_code == 200, (data, r.text)
    jsonschema.validate(r.json(), _response_schema(path, "post", 200))


async def test_answers_match_their_response_schemas(client: httpx.AsyncClient) -> None:
    customer = {"email": "a@example.org", "tags": ["vip"], "consents": {"news": True}}
    r = await client.put("/v1/customers/c1", json=customer, headers=auth())
    assert r.status_code == 201
    jsonschema.validate(r.json(), _response_schema("/v1/customers/{customer_id}", "put", 201))
    r = await client.get("/v1/customers/c1/rewards", headers=auth())
    assert r.status_code == 200
    jsonschema.validate(
        r.json(), _response_schema("/v1/customers/{customer_id}/rewards", "get", 200)
    )
    for bad in (
        await client.put("/v1/customers/c1", json={"consents": None}, headers=auth()),
        await client.get("/v1/customers/nobody/rewards", headers=auth()),
        await client.post("/v1/events", json={"events": []}),
    ):
        assert bad.status_code >= 400
        jsonschema.validate(bad.json(), _response_schema("/v1/events", "post", 422))


def _examples() -> list[tuple[str, str, Any, dict[str, Any]]]:
    found = []
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            media = op.get("requestBody", {}).get("content", {}).get("application/json")
            if media is None:
                continue
            ref = media["schema"]["$ref"].rsplit("/", 1)[1]
            for example in DOC["components"]["schemas"][ref].get("examples", []):
                found.append((path, method, example, _schema(media["schema"])))
    return found


def test_every_json_body_has_an_example_that_fits_its_schema() -> None:
    examples = _examples()
    bodies = {(path, method) for path, method, _, _ in examples}
    assert bodies == {
        (path, method)
        for path, item in DOC["paths"].items()
        for method, op in item.items()
        if "application/json" in op.get("requestBody", {}).get("content", {})
    }
    for path, method, example, schema in examples:
        jsonschema.validate(example, schema), (method, path)


async def test_the_examples_are_accepted_by_the_api(app: ApiApp, client: httpx.AsyncClient) -> None:
    async def redeem(*args: Any) -> dict[str, Any]:
        return {"redeemed": True, "reason": None}

    app.extras["redeem"] = redeem
    for path, method, example, _ in _examples():
        url = path.replace("{customer_id}", "c42").replace("{name}", "vip-2026")
        url = url.replace("{id}", "winback").replace("{run}", "1")
        r = await client.request(method.upper(), url, json=example, headers=auth())
        if "/runs/" in path:
            assert r.status_code == 404, r.text  # no such run here: the body itself was fine
        else:
            assert r.status_code in (200, 201), (path, r.text)


def test_reward_states_in_the_schema_are_the_holdings_states() -> None:
    from promod.rewards.holdings import REWARD_STATES

    reward = DOC["components"]["schemas"]["Reward"]["properties"]["state"]
    assert tuple(reward["enum"]) == REWARD_STATES
