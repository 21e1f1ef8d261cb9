"""The HTTP API over a real database: auth, errors, body limits, customers, events, rewards."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from promod.config import HttpToken
from promod.customers.store import StoredEvent
from tests.httpapi.conftest import T0, ApiApp, auth, make_config

pytestmark = pytest.mark.anyio


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


# -- auth ---------------------------------------------------------------------------


async def test_missing_token_is_401_with_challenge(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/events", json={"events": []})
    _error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_unknown_token_and_bad_scheme_are_401(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/events", json={"events": []}, headers={"Authorization": "Bearer x"})
    _error(r, 401, "unauthorized")
    r = await client.post(
        "/v1/events", json={"events": []}, headers={"Authorization": "Basic dXNlcjpwdw=="}
    )
    _error(r, 401, "unauthorized")


async def test_token_without_the_scope_is_403(client: httpx.AsyncClient) -> None:
    r = await client.put("/v1/customers/c1", json={}, headers=auth("events"))
    error = _error(r, 403, "forbidden")
    assert error["details"] == {"required_scope": "customers:write"}
    r = await client.post("/v1/events", json={"events": []}, headers=auth("reader"))
    _error(r, 403, "forbidden")


async def test_tokens_are_read_per_request_so_a_reload_applies(
    app: ApiApp, client: httpx.AsyncClient
) -> None:
    new = HttpToken(
        name="late", sha256=hashlib.sha256(b"late-token").hexdigest(), scopes=frozenset({"read"})
    )
    headers = {"Authorization": "Bearer late-token"}
    assert (await client.get("/v1/customers/c1/rewards", headers=headers)).status_code == 401
    http = app.config.http.model_copy(update={"tokens": (new,)})
    app.config = app.config.model_copy(update={"http": http})
    assert (await client.get("/v1/customers/c1/rewards", headers=headers)).status_code == 404
    assert (await client.get("/v1/customers/c1/rewards", headers=auth())).status_code == 401


# -- errors and bodies ----------------------------------------------------------------


async def test_unknown_route_and_method_answer_json_errors(client: httpx.AsyncClient) -> None:
    _error(await client.get("/v1/nothing"), 404, "not_found")
    _error(await client.get("/v1/events", headers=auth()), 405, "method_not_allowed")
    _error(await client.delete("/v1/customers/c1", headers=auth()), 405, "method_not_allowed")


async def test_method_not_allowed_names_every_method_of_the_path(
    client: httpx.AsyncClient,
) -> None:
    r = await client.options("/v1/unsubscribe")
    _error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET, POST"
    # ":add" is its own resource (POST only), not a list named "x:add".
    r = await client.put("/v1/lists/x:add", json={"customer_ids": []}, headers=auth())
    _error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"


async def test_malformed_json_and_wrong_types_are_4xx(client: httpx.AsyncClient) -> None:
    h = {**auth(), "Content-Type": "application/json"}
    _error(await client.post("/v1/events", content=b"{nope", headers=h), 400, "bad_request")
    _error(await client.post("/v1/events", content=b"[1, 2]", headers=h), 422, "invalid")
    _error(await client.post("/v1/events", content=b"\xff\xfe", headers=h), 400, "bad_request")
    _error(await client.post("/v1/events", content=b'{"a": NaN}', headers=h), 400, "bad_request")
    r = await client.post(
        "/v1/events", content=b"x=1", headers={**auth(), "Content-Type": "text/plain"}
    )
    _error(r, 415, "unsupported_media_type")
    _error(await client.post("/v1/events", json={"events": {}}, headers=auth()), 422, "invalid")
    _error(await client.post("/v1/events", json={"evts": []}, headers=auth()), 422, "invalid")


async def test_oversized_body_is_413_declared_or_chunked(
    app: ApiApp, client: httpx.AsyncClient
) -> None:
    limit = app.config.http.max_body
    big = b'{"events": [' + b" " * limit + b"]}"
    h = {**auth(), "Content-Type": "application/json"}
    error = _error(
        await client.post("/v1/events", content=big, headers=h), 413, "payload_too_large"
    )
    assert error["details"] == {"max_body": limit}

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"events": ['
        for _ in range(limit // 1024 + 2):
            yield b" " * 1024
        yield b"]}"

    r = await client.post("/v1/events", content=chunks(), headers=h)
    assert "content-length" not in r.request.headers
    _error(r, 413, "payload_too_large")
    # ... and the app carries on.
    ok = await client.post("/v1/events", json={"events": []}, headers=auth())
    assert ok.status_code == 200


async def test_max_body_is_read_per_request(app: ApiApp, client: httpx.AsyncClient) -> None:
    body = {"customers": [{"id": f"c{i}", "email": f"c{i}@example.org"} for i in range(50)]}
    assert (await client.post("/v1/customers:batch", json=body, headers=auth())).status_code == 200
    app.config = make_config(max_body="1KiB")
    r = await client.post("/v1/customers:batch", json=body, headers=auth())
    _error(r, 413, "payload_too_large")


# -- customers ----------------------------------------------------------------------


async def test_put_customer_creates_then_replaces(app: ApiApp, client: httpx.AsyncClient) -> None:
    body = {
        "email": "a@example.org",
        "timezone": "Europe/Berlin",
        "attributes": {"country": "DE", "ltv": 12.5, "vip": True},
        "tags": ["bonus_interest", "vip"],
        "consents": {"marketing_email": True, "sms": False},
    }
    r = await client.put("/v1/customers/c42", json=body, headers=auth())
    assert r.status_code == 201, r.text
    assert r.json()["created"] is True
    assert r.json()["customer"]["attributes"] == {"country": "DE", "ltv": "12.5", "vip": True}

    r = await client.put("/v1/customers/c42", json={"id": "c42", "tags": ["vip"]}, headers=auth())
    assert r.status_code == 200
    assert r.json()["created"] is False
    row = await app.db.fetchone("SELECT email, attributes FROM customers WHERE id = 'c42'")
    assert row is not None and row["email"] is None and row["attributes"] == "{}"
    tags = await app.db.fetchall("SELECT tag FROM customer_tags WHERE customer_id = 'c42'")
    assert [t[0] for t in tags] == ["vip"]
    consents = await app.db.fetchall("SELECT * FROM customer_consents WHERE customer_id = 'c42'")
    assert consents == []


async def test_put_customer_validation_names_the_field(client: httpx.AsyncClient) -> None:
    r = await client.put("/v1/customers/c1", json={"email": "nope"}, headers=auth())
    error = _error(r, 422, "invalid")
    assert error["details"]["errors"][0]["field"] == "email"
    assert error["details"]["errors"][0]["path"] == "email"
    assert error["details"]["errors"][0]["loc"] == ["body", "email"]
    r = await client.put("/v1/customers/c1", json={"id": "c2"}, headers=auth())
    assert _error(r, 409, "conflict")["details"]["errors"][0]["field"] == "id"
    r = await client.put("/v1/customers/c1", json={"attributes": {"x": [1]}}, headers=auth())
    assert _error(r, 422, "invalid")["details"]["errors"][0]["field"] == "attributes.x"


async def test_consent_source_is_api(app: ApiApp, client: httpx.AsyncClient) -> None:
    r = await client.put(
        "/v1/customers/c1", json={"consents": {"marketing_email": True}}, headers=auth()
    )
    assert r.status_code == 201
    row = await app.db.fetchone("SELECT granted, source, updated_at FROM customer_consents")
    assert row is not None and tuple(row) == (1, "api", "2026-09-21T14:13:20Z")


async def test_batch_is_all_or_nothing_with_indexed_errors(
    app: ApiApp, client: httpx.AsyncClient
) -> None:
    customers = [{"id": f"c{i}"} for i in range(10)]
    customers[3] = {"id": "c3", "timezone": "Mars/Olympus"}
    customers[7] = {"id": "", "tags": ["x"]}
    r = await client.post("/v1/customers:batch", json={"customers": customers}, headers=auth())
    error = _error(r, 422, "invalid")
    assert error["details"]["error_count"] == 2
    assert [(e["index"], e["path"]) for e in error["details"]["errors"]] == [
        (3, "customers[3].timezone"),
        (7, "customers[7].id"),
    ]
    row = await app.db.fetchone("SELECT count(*) FROM customers")
    assert row is not None and row[0] == 0

    customers[3] = {"id": "c3"}
    customers[7] = {"id": "c1", "email": "last@example.org"}  # repeated id: the last wins
    r = await client.post("/v1/customers:batch", json={"customers": customers}, headers=auth())
    assert r.status_code == 200, r.text
    assert r.json() == {"upserted": 9, "created": 9, "updated": 0}
    row = await app.db.fetchone("SELECT email FROM customers WHERE id = 'c1'")
    assert row is not None and row[0] == "last@example.org"
    r = await client.post(
        "/v1/customers:batch", json={"customers": [{"id": "c1"}, {"id": "new"}]}, headers=auth()
    )
    assert r.json() == {"upserted": 2, "created": 1, "updated": 1}


async def test_batch_size_is_limited(client: httpx.AsyncClient, app: ApiApp) -> None:
    app.config = make_config(max_body="4MiB")
    body = {"customers": [{"id": f"c{i}"} for i in range(10_001)]}
    error = _error(
        await client.post("/v1/customers:batch", json=body, headers=auth()), 422, "invalid"
    )
    assert error["details"]["errors"][0]["path"] == "customers"
    assert "at most 10000" in error["details"]["errors"][0]["message"]


async def test_every_bad_field_of_a_body_is_named_at_once(client: httpx.AsyncClient) -> None:
    body = {"email": "nope", "tags": ["ok", 3], "consents": {"news": "yes"}, "colour": "red"}
    r = await client.put("/v1/customers/c1", json=body, headers=auth())
    error = _error(r, 422, "invalid")
    paths = sorted(e["path"] for e in error["details"]["errors"])
    assert paths == ["colour", "consents.news", "email", "tags[1]"]
    assert all("index" not in e for e in error["details"]["errors"])
    assert {e["field"] for e in error["details"]["errors"]} == set(paths)
    assert error["details"]["error_count"] == 4


@pytest.mark.parametrize("field", ["consents", "attributes", "tags"])
async def test_null_where_the_schema_wants_a_value_is_422_and_keeps_the_data(
    app: ApiApp, client: httpx.AsyncClient, field: str
) -> None:
    stored = {"consents": {"news": True}, "attributes": {"tier": "gold"}, "tags": ["vip"]}
    assert (await client.put("/v1/customers/c1", json=stored, headers=auth())).status_code == 201
    r = await client.put("/v1/customers/c1", json={**stored, field: None}, headers=auth())
    error = _error(r, 422, "invalid")
    assert [e["path"] for e in error["details"]["errors"]] == [field]
    consents = await app.db.fetchall("SELECT consent, granted FROM customer_consents")
    assert [tuple(c) for c in consents] == [("news", 1)]
    row = await app.db.fetchone("SELECT attributes FROM customers WHERE id = 'c1'")
    assert row is not None and row[0] == '{"tier":"gold"}'


async def test_null_properties_refuse_the_event_batch(
    app: ApiApp, client: httpx.AsyncClient
) -> None:
    event = {"customer_id": "c1", "name": "n", "ts": "2026-11-20T18:03:00Z", "properties": None}
    r = await client.post("/v1/events", json={"events": [event]}, headers=auth())
    error = _error(r, 422, "invalid")
    assert error["details"]["errors"][0]["path"] == "events[0].properties"
    assert error["details"]["errors"][0]["index"] == 0
    row = await app.db.fetchone("SELECT count(*) FROM events")
    assert row is not None and row[0] == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "where"),
    [
        ("PUT", "/v1/customers/c1", b'{"tags": ["\\ud800"]}', "tags[0]"),
        ("PUT", "/v1/customers/c1", b'{"attributes": {"a": "x\\udfff"}}', "attributes.a"),
        ("PUT", "/v1/customers/c1", b'{"attributes": {"\\ud800": 1}}', "attributes.\\ud800"),
        (
            "POST",
            "/v1/events",
            b'{"events": [{"customer_id": "c1", "name": "n", "ts": "2026-11-20T18:03:00Z",'
            b' "properties": {"k": ["\\ud83d"]}}]}',
            "events[0].properties.k[0]",
        ),
        (
            "POST",
            "/v1/redemptions",
            b'{"code": "\\ud800", "customer_id": "c1", "ip": "203.0.113.7"}',
            "code",
        ),
    ],
)
async def test_lone_surrogates_are_refused_naming_the_field(
    app: ApiApp, client: httpx.AsyncClient, method: str, path: str, body: bytes, where: str
) -> None:
    calls: list[Any] = []

    async def redeem(*args: Any) -> dict[str, Any]:
        calls.append(args)
        return {"redeemed": True, "reason": None}

    app.extras["redeem"] = redeem
    h = {**auth(), "Content-Type": "application/json"}
    r = await client.request(method, path, content=body, headers=h)
    error = _error(r, 400, "bad_request")
    assert error["details"]["errors"][0]["path"] == where
    assert "surrogate" in error["message"]
    assert calls == []
    for table in ("customers", "events"):
        row = await app.db.fetchone(f"SELECT count(*) FROM {table}")
        assert row is not None and row[0] == 0
    # ... and the API carries on.
    ok = await client.put("/v1/customers/c1", json={"tags": ["\u00e9"]}, headers=auth())
    assert ok.status_code == 201, ok.text


# -- events -------------------------------------------------------------------------


def _event(i: int, event_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "customer_id": f"c{i % 3}",
        "name": "purchase",
        "ts": "2026-11-20T18:03:00+01:00",
        "properties": {"amount": "59.90", "n": i},
    }
    if event_id is not None:
        event["id"] = event_id
    return event


async def test_events_are_idempotent_on_their_id(app: ApiApp, client: httpx.AsyncClient) -> None:
    batch = [_event(0, "e0"), _event(1, "e1"), _event(2), _event(3, "e0")]
    r = await client.post("/v1/events", json={"events": batch}, headers=auth("events"))
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 3, "duplicates": 1, "duplicate_ids": ["e0"]}
    r = await client.post(
        "/v1/events", json={"events": [_event(4, "e1"), _event(5, "e5")]}, headers=auth()
    )
    assert r.json() == {"accepted": 1, "duplicates": 1, "duplicate_ids": ["e1"]}
    rows = await app.db.fetchall("SELECT event_id, ts, properties FROM events ORDER BY seq")
    assert [r[0] for r in rows] == ["e0", "e1", None, "e5"]
    assert rows[0][1] == 1795194180
    assert rows[0][2] == '{"amount":"59.90","n":0}'


async def test_invalid_event_refuses_the_batch(app: ApiApp, client: httpx.AsyncClient) -> None:
    batch = [_event(0, "a"), {**_event(1), "ts": "2026-11-20T18:03:00"}]
    error = _error(
        await client.post("/v1/events", json={"events": batch}, headers=auth()), 422, "invalid"
    )
    assert error["details"]["errors"][0]["path"] == "events[1].ts"
    row = await app.db.fetchone("SELECT count(*) FROM events")
    assert row is not None and row[0] == 0


async def test_on_events_hook_gets_the_new_events_after_commit(
    app: ApiApp, client: httpx.AsyncClient
) -> None:
    seen: list[list[StoredEvent]] = []

    async def hook(stored: list[StoredEvent]) -> None:
        row = await app.db.fetchone("SELECT count(*) FROM events")
        assert row is not None and row[0] >= len(stored)  # committed and visible
        seen.append(stored)

    app.extras["on_events"] = hook
    await client.post("/v1/events", json={"events": [_event(0, "x"), _event(1)]}, headers=auth())
    await client.post("/v1/events", json={"events": [_event(0, "x")]}, headers=auth())
    assert len(seen) == 1  # an all-duplicate batch calls nothing
    assert [s.event.event_id for s in seen[0]] == ["x", None]
    assert seen[0][0].seq < seen[0][1].seq

    def broken(stored: list[StoredEvent]) -> None:
        raise RuntimeError("evaluator down")

    app.extras["on_events"] = broken
    r = await client.post("/v1/events", json={"events": [_event(2, "y")]}, headers=auth())
    assert r.status_code == 200 and r.json()["accepted"] == 1


# -- rewards ------------------------------------------------------------------------


async def _grant(app: ApiApp, gid: int, customer: str, state: str, **kw: Any) -> None:
    spec = '{"id": "camp", "reward": {"provider": "wallet_points", "amount": "500",'
    spec += ' "value": "5.00", "currency": "EUR",'
    spec += ' "fallback": {"provider": "coupon", "amount": "2.50", "value": "2.50"}}}'
    async with app.db.transaction() as conn:
        await conn.execute(
            "INSERT OR IGNORE INTO campaigns (id, version, state, spec, created_at, updated_at)"
            " VALUES ('camp', 1, 'running', ?, ?, ?)",
            (spec, T0, T0),
        )
        await conn.execute(
            "INSERT OR IGNORE INTO campaign_versions (campaign_id, version, spec, applied_at)"
            " VALUES ('camp', 1, ?, ?)",
            (spec, T0),
        )
        await conn.execute(
            "INSERT OR IGNORE INTO runs (id, campaign_id, seq, version, state, as_of,"
            " started_at, seed) VALUES (1, 'camp', 1, 1, 'running', ?, ?, 1)",
            (T0, T0),
        )
        await conn.execute(
            "INSERT INTO grants (id, campaign_id, run_id, customer_id, provider, amount_minor,"
            " value_minor, currency, state, day, created_at, issued_at, code)"
            " VALUES (?, 'camp', 1, ?, ?, ?, ?, 'EUR', ?, '2026-09-21', ?, ?, ?)",
            (
                gid,
                customer,
                kw.get("provider", "wallet_points"),
                kw.get("amount", 500),
                kw.get("value", 500),
                state,
                T0 + gid,
                T0 + gid if state == "issued" else None,
                kw.get("code"),
            ),
        )


async def test_rewards_lists_live_grants_and_the_wallet(
    app: ApiApp, client: httpx.AsyncClient
) -> None:
    await client.put("/v1/customers/c1", json={}, headers=auth())
    await _grant(app, 1, "c1", "issued")
    async with app.db.transaction() as conn:
        await conn.execute(
            "INSERT INTO wallet_transactions (customer_id, points, grant_id, reason, created_at)"
            " VALUES ('c1', 500, 1, 'grant', ?)",
            (T0,),
        )
    # Another run of the same campaign for the coupon fallback, a failed one, another customer.
    async with app.db.transaction() as conn:
        await conn.execute(
            "INSERT INTO runs (id, campaign_id, seq, version, state, as_of, started_at, seed)"
            " VALUES (2, 'camp', 2, 1, 'running', ?, ?, 1), (3, 'camp', 3, 1, 'running', ?, ?, 1)",
            (T0, T0, T0, T0),
        )
        await conn.execute(
            "INSERT INTO grants (id, campaign_id, run_id, customer_id, provider, amount_minor,"
            " value_minor, currency, state, day, created_at, code) VALUES"
            " (2, 'camp', 2, 'c1', 'coupon', 250, 250, 'EUR', 'reserved', 'd', ?, 'WELCOME10'),"
            " (3, 'camp', 3, 'c1', 'coupon', 250, 250, 'EUR', 'failed', 'd', ?, NULL)",
            (T0 + 5, T0 + 6),
        )
    await _grant(app, 4, "c2", "issued")

    r = await client.get("/v1/customers/c1/rewards", headers=auth("reader"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["customer_id"] == "c1"
    assert body["wallet"] == {"points": 500}
    assert [(g["grant_id"], g["state"], g["amount"], g["value"]) for g in body["rewards"]] == [
        (1, "issued", "500", "5.00"),
        (2, "reserved", "2.50", "2.50"),
    ]
    assert body["rewards"][1]["code"] == "WELCOME10"
    assert body["rewards"][0]["granted_at"] == "2026-09-21T14:13:21Z"

    r = await client.get("/v1/customers/nobody/rewards", headers=auth("reader"))
    _error(r, 404, "not_found")
    r = await client.get("/v1/customers/c1/rewards", headers=auth("events"))
    _error(r, 403, "forbidden")


async def test_rewards_show_the_real_state_and_leave_out_unusable_ones_by_default(
    app: ApiApp, client: httpx.AsyncClient
) -> None:
    await client.put("/v1/customers/c1", json={}, headers=auth())
    codes = {
        1: ("LIVE-1", "assigned", None),
        2: ("GONE-2", "revoked", None),
        3: ("OLD-3", "expired", T0 - 10),
        4: ("LATE-4", "assigned", T0 - 5),  # past its expiry, the sweep has not run yet
        5: ("USED-5", "redeemed", None),
    }
    await _grant(app, 1, "c1", "issued", provider="code_pool", code="LIVE-1", amount=None)
    async with app.db.transaction() as conn:
        for gid in range(2, 6):  # one run each: at most one grant per customer and run
            await conn.execute(
                "INSERT INTO runs (id, campaign_id, seq, version, state, as_of, started_at, seed)"
                " VALUES (?, 'camp', ?, 1, 'running', ?, ?, 1)",
                (gid, gid, T0, T0),
            )
            await conn.execute(
                "INSERT INTO grants (id, campaign_id, run_id, customer_id, provider,"
                " value_minor, currency, state, day, created_at, issued_at, code)"
                " VALUES (?, 'camp', ?, 'c1', 'code_pool', 500, 'EUR', 'issued', 'd', ?, ?, ?)",
                (gid, gid, T0 + gid, T0 + gid, codes[gid][0]),
            )
        for gid, (code, state, expires) in codes.items():
            # A customer holds one code of a series: one pool (and series) each.
            await conn.execute(
                "INSERT INTO code_pools (id, name, series, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (gid, f"P{gid}", f"P{gid}", T0, T0),
            )
            await conn.execute(
                "INSERT INTO codes (pool_id, series, code, state, expires_at, customer_id,"
                " grant_id, campaign_id, created_at, assigned_at, redeemed_at, ended_at)"
                " VALUES (?, ?, ?, ?, ?, 'c1', ?, 'camp', ?, ?, ?, ?)",
                (
                    gid,
                    f"P{gid}",
                    code,
                    state,
                    expires,
                    gid,
                    T0,
                    T0,
                    T0 + 30 if state == "redeemed" else None,
                    T0 + 20 if state in ("revoked", "expired") else None,
                ),
            )

    def states(body: dict[str, Any]) -> list[tuple[int, str, str | None]]:
        return [(r["grant_id"], r["state"], r["code"]) for r in body["rewards"]]

    r = await client.get("/v1/customers/c1/rewards", headers=auth("reader"))
    assert r.status_code == 200, r.text
    assert states(r.json()) == [(1, "issued", "LIVE-1")]

    r = await client.get("/v1/customers/c1/rewards?include=all", headers=auth("reader"))
    body = r.json()
    assert states(body) == [
        (1, "issued", "LIVE-1"),
        (2, "revoked", "GONE-2"),
        (3, "expired", "OLD-3"),
        (4, "expired", "LATE-4"),
        (5, "redeemed", "USED-5"),
    ]
    by_id = {g["grant_id"]: g for g in body["rewards"]}
    assert by_id[5]["redeemed_at"] == "2026-09-21T14:13:50Z"
    assert by_id[2]["ended_at"] == "2026-09-21T14:13:40Z"
    assert by_id[4]["ended_at"] == by_id[4]["expires_at"] == "2026-09-21T14:13:15Z"
    assert by_id[1]["redeemed_at"] is None and by_id[1]["ended_at"] is None

    r = await client.get("/v1/customers/c1/rewards?state=expired", headers=auth("reader"))
    assert [g["grant_id"] for g in r.json()["rewards"]] == [3, 4]
    r = await client.get("/v1/customers/c1/rewards?include=usable", headers=auth("reader"))
    assert [g["grant_id"] for g in r.json()["rewards"]] == [1]

    # state names the one state wanted, whatever include says.
    r = await client.get(
        "/v1/customers/c1/rewards?include=all&state=issued", headers=auth("reader")
    )
    assert [g["grant_id"] for g in r.json()["rewards"]] == [1]
    for query, field in (
        ("state=gone", "state"),
        ("include=some", "include"),
        ("status=issued", "status"),
    ):
        r = await client.get(f"/v1/customers/c1/rewards?{query}", headers=auth("reader"))
        body = _error(r, 422, "invalid")
        assert body["details"]["errors"][0]["field"] == field, query


# -- health and client address ------------------------------------------------------------


async def test_healthz_follows_readiness(app: ApiApp, client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    app.shutting_down = True
    r = await client.get("/healthz")
    assert r.status_code == 503 and r.json() == {"status": "unavailable"}
    app.shutting_down, app.ready = False, False
    assert (await client.get("/healthz")).status_code == 503


async def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    from starlette.requests import Request

    from promod.http.clientip import client_address

    def request(peer: str, xff: str | None) -> Request:
        headers = [(b"x-forwarded-for", xff.encode())] if xff else []
        return Request({"type": "http", "client": (peer, 1), "headers": headers})

    trusted = ["10.0.0.0/8", "::1"]
    assert client_address(request("203.0.113.5", "1.2.3.4"), trusted) == "203.0.113.5"
    assert client_address(request("10.0.0.2", "1.2.3.4"), trusted) == "1.2.3.4"
    assert client_address(request("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.9"), trusted) == "1.2.3.4"
    assert client_address(request("::1", None), trusted) == "::1"
    assert client_address(request("10.0.0.2", "1.2.3.4"), []) == "10.0.0.2"
    assert client_address(request("10.0.0.2", "10.0.0.3"), trusted) == "10.0.0.3"


async def test_lone_surrogates_in_path_or_query_are_refused(app: ApiApp) -> None:
    """An ASGI server may pass any text: the route refuses it before it is used."""
    from promod.http.routes import build_app

    asgi = build_app(app)

    async def call(path: str, query: bytes = b"") -> tuple[int, dict[str, Any]]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": b"/",
            "query_string": query,
            "root_path": "",
            "headers": [(b"authorization", auth()["Authorization"].encode())],
            "client": ("127.0.0.1", 1),
            "server": ("promod.test", 80),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await asgi(scope, receive, send)
        import json

        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return sent[0]["status"], json.loads(body)

    status, body = await call("/v1/customers/c\ud800/rewards")
    assert status == 400
    assert body["error"]["details"]["errors"][0]["path"] == "path.customer_id"
    status, body = await call("/v1/campaigns/w/runs/1/customers", b"cursor=%ED%A0%80")
    assert status == 422  # percent-escapes that are not UTF-8 arrive as U+FFFD
