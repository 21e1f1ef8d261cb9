"""The customer tag routes over ASGI: read with reasons, add and remove by hand (audited,
in the tag history), and the refusals — unknown customer, bad names, scopes."""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from promod.app import App
from tests.httpapi.conftest import T0, auth

pytestmark = pytest.mark.anyio


async def _customer(client: httpx.AsyncClient, cid: str, tags: list[str]) -> None:
    r = await client.put(f"/v1/customers/{cid}", json={"tags": tags}, headers=auth())
    assert r.status_code == 201, r.text


async def test_add_and_remove_a_tag_by_hand(client: httpx.AsyncClient, app: App) -> None:
    await _customer(client, "c42", ["from_profile"])
    r = await client.post(
        "/v1/customers/c42/tags/vip", params={"reason": "phone call"}, headers=auth()
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["changed"] is True
    assert body["tags"] == [
        {"tag": "from_profile", "source": "api", "rule": None, "reason": None, "since": T0},
        {"tag": "vip", "source": "api:all", "rule": None, "reason": "phone call", "since": T0},
    ]
    again = await client.post("/v1/customers/c42/tags/vip", headers=auth())
    assert again.json()["changed"] is False
    r = await client.delete("/v1/customers/c42/tags/vip", headers=auth())
    assert r.status_code == 200 and r.json()["changed"] is True
    listed = await client.get("/v1/customers/c42/tags", headers=auth("reader"))
    assert [t["tag"] for t in listed.json()["tags"]] == ["from_profile"]
    with sqlite3.connect(app.db.path) as conn:
        history = conn.execute(
            "SELECT tag, change, source, reason FROM tag_history ORDER BY id"
        ).fetchall()
        audit = conn.execute("SELECT command, user, args FROM audit_log ORDER BY id").fetchall()
    assert history == [
        ("from_profile", "added", "api", None),
        ("vip", "added", "api:all", "phone call"),
        ("vip", "removed", "api:all", None),
    ]
    assert [(a[0], a[1]) for a in audit] == [
        ("http.tags.add", "api:all"),
        ("http.tags.add", "api:all"),
        ("http.tags.remove", "api:all"),
    ]
    assert '"changed": false' in audit[1][2]


async def test_refusals(client: httpx.AsyncClient) -> None:
    await _customer(client, "c1", [])
    assert (await client.post("/v1/customers/nobody/tags/x", headers=auth())).status_code == 404
    assert (await client.get("/v1/customers/nobody/tags", headers=auth())).status_code == 404
    too_long = "t" * 129
    r = await client.post(f"/v1/customers/c1/tags/{too_long}", headers=auth())
    assert r.status_code == 422
    r = await client.post("/v1/customers/c1/tags/%20x", headers=auth())
    assert r.status_code == 422
    r = await client.post("/v1/customers/c1/tags/x", params={"reason": "r" * 501}, headers=auth())
    assert r.status_code == 422
    assert (await client.post("/v1/customers/c1/tags/x")).status_code == 401
    assert (await client.post("/v1/customers/c1/tags/x", headers=auth("reader"))).status_code == 403
    assert (await client.get("/v1/customers/c1/tags", headers=auth("events"))).status_code == 403


async def test_the_routes_are_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    item = document["paths"]["/v1/customers/{customer_id}/tags/{tag}"]
    assert {"post", "delete"} <= set(item)
    assert item["post"]["x-promod-scope"] == "customers:write"
    assert "/v1/customers/{customer_id}/tags" in document["paths"]
