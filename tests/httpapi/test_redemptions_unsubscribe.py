"""``POST /v1/redemptions`` and the one-click unsubscribe endpoint."""

from __future__ import annotations

import importlib.util
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from promod.notify.unsubscribe import make_unsubscribe_token, unsubscribe_key_sync
from tests.httpapi.conftest import ApiApp, auth, make_config

pytestmark = pytest.mark.anyio

HAVE_CODEPOOL = importlib.util.find_spec("promod.codepool.redeem") is not None


class Outcome:
    def __init__(self, redeemed: bool, reason: str | None) -> None:
        self.redeemed = redeemed
        self.reason = reason


async def test_redemption_passes_the_customers_ip_and_answers_the_outcome(
    app: ApiApp, client: httpx.AsyncClient
) -> None:
    calls: list[dict[str, Any]] = []

    async def redeem(
        app_: Any, code: str, customer_id: str, ip: str, fraud: Any, now: float
    ) -> Outcome:
        assert app_ is app and fraud is app.config.fraud and now == app.clock.now()
        calls.append({"code": code, "customer_id": customer_id, "ip": ip})
        return Outcome(True, None) if code == "GOOD" else Outcome(False, "not_found")

    app.extras["redeem"] = redeem
    body = {"code": "GOOD", "customer_id": "c42", "ip": "2001:db8::1"}
    headers = {**auth(), "X-Forwarded-For": "192.0.2.1"}
    with capture_logs() as logs:
        r = await client.post("/v1/redemptions", json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"redeemed": True, "reason": None}
    assert calls == [{"code": "GOOD", "customer_id": "c42", "ip": "2001:db8::1"}]
    line = next(e for e in logs if e["event"] == "redemption")
    assert line["client"] == "198.51.100.9"  # the proxy header is not believed
    assert "GOOD" not in repr(logs)  # codes never reach the log

    r = await client.post("/v1/redemptions", json={**body, "code": "BAD"}, headers=auth())
    assert r.json() == {"redeemed": False, "reason": "not_found"}


async def test_redemption_logs_the_forwarded_client_from_a_trusted_proxy(
    app: ApiApp, client: httpx.AsyncClient
) -> None:
    async def redeem(*args: Any) -> dict[str, Any]:
        return {"redeemed": False, "reason": "blocked"}

    app.extras["redeem"] = redeem
    app.config = make_config(trusted=["198.51.100.0/24"])
    body = {"code": "X", "customer_id": "c42", "ip": "203.0.113.7"}
    with capture_logs() as logs:
        r = await client.post(
            "/v1/redemptions", json=body, headers={**auth(), "X-Forwarded-For": "192.0.2.1"}
        )
    assert r.json() == {"redeemed": False, "reason": "blocked"}
    assert next(e for e in logs if e["event"] == "redemption")["client"] == "192.0.2.1"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"code": "X", "customer_id": "c1"}, "ip"),
        ({"code": "X", "customer_id": "c1", "ip": "999.1.1.1"}, "ip"),
        ({"code": "", "customer_id": "c1", "ip": "10.0.0.1"}, "code"),
        ({"code": "X", "customer_id": 5, "ip": "10.0.0.1"}, "customer_id"),
        ({"code": "X", "customer_id": "c1", "ip": "10.0.0.1", "extra": 1}, "extra"),
    ],
)
async def test_redemption_body_is_validated(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    r = await client.post("/v1/redemptions", json=body, headers=auth())
    assert r.status_code == 422
    assert r.json()["error"]["details"]["errors"][0]["field"] == field


async def test_redemption_needs_the_redeem_scope(client: httpx.AsyncClient) -> None:
    body = {"code": "X", "customer_id": "c1", "ip": "10.0.0.1"}
    r = await client.post("/v1/redemptions", json=body, headers=auth("reader"))
    assert r.status_code == 403


async def _assigned_code(app: ApiApp, code: str, customer_id: str) -> None:
    async with app.db.transaction() as conn:
        await conn.execute(
            "INSERT OR IGNORE INTO code_pools (id, name, series, created_at, updated_at)"
            " VALUES (1, 'XMAS', 'XMAS', 0, 0)"
        )
        await conn.execute(
            "INSERT INTO codes (pool_id, series, code, state, customer_id, created_at)"
            " VALUES (1, 'XMAS', ?, 'assigned', ?, 0)",
            (code, customer_id),
        )


@pytest.mark.skipif(not HAVE_CODEPOOL, reason="no code pool yet")
async def test_redemption_through_the_code_pool_and_its_fraud_limits(
    app: ApiApp, client: httpx.AsyncClient
) -> None:
    await _assigned_code(app, "XMAS-AAAA", "c42")
    await _assigned_code(app, "XMAS-BBBB", "c43")

    async def post(code: str, customer: str, ip: str) -> Any:
        body = {"code": code, "customer_id": customer, "ip": ip}
        r = await client.post("/v1/redemptions", json=body, headers=auth())
        assert r.status_code == 200, r.text
        return r.json()

    # Someone else's code looks like no code at all.
    assert await post("XMAS-BBBB", "c42", "203.0.113.1") == {
        "redeemed": False,
        "reason": "invalid_code",
    }
    assert await post("XMAS-AAAA", "c42", "203.0.113.1") == {"redeemed": True, "reason": None}
    again = await post("XMAS-AAAA", "c42", "203.0.113.2")
    assert again == {"redeemed": False, "reason": "already_redeemed"}
    # Guessing from one address gets it blocked; another address is not.
    limit = app.config.fraud.failed_redemptions_per_ip_per_hour
    for i in range(limit):
        await post(f"GUESS-{i}", f"g{i}", "198.51.100.66")
    assert (await post("XMAS-BBBB", "c43", "198.51.100.66"))["reason"] == "blocked"
    assert await post("XMAS-BBBB", "c43", "192.0.2.10") == {"redeemed": True, "reason": None}


# -- unsubscribe ----------------------------------------------------------------------


async def _token(app: ApiApp, customer_id: str, consent: str | None) -> str:
    key = await app.db.run_sync(unsubscribe_key_sync)
    return make_unsubscribe_token(key, customer_id, consent)


ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_one_click_unsubscribe_withdraws_the_consent(
    app: ApiApp, client: httpx.AsyncClient
) -> None:
    await client.put(
        "/v1/customers/c42",
        json={"email": "A@example.org", "consents": {"marketing_email": True}},
        headers=auth(),
    )
    token = await _token(app, "c42", "marketing_email")

    page = await client.get("/v1/unsubscribe", params={"token": token})
    assert page.status_code == 200
    assert "List-Unsubscribe" in page.text and 'method="post"' in page.text
    row = await app.db.fetchone("SELECT granted FROM customer_consents")
    assert row is not None and row[0] == 1  # a GET never unsubscribes

    app.clock.advance(60)
    r = await client.post(
        "/v1/unsubscribe",
        params={"token": token},
        content=b"List-Unsubscribe=One-Click",
        headers=ONE_CLICK,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"unsubscribed": True, "consent": "marketing_email"}
    row = await app.db.fetchone(
        "SELECT granted, source, updated_at FROM customer_consents WHERE customer_id = 'c42'"
    )
    assert row is not None and tuple(row) == (0, "unsubscribe", "2026-09-21T14:14:20Z")
    sup = await app.db.fetchone("SELECT address, reason FROM suppressions")
    assert sup is not None and tuple(sup) == ("a@example.org", "unsubscribed")

    again = await client.post(
        "/v1/unsubscribe", params={"token": token}, data={"List-Unsubscribe": "One-Click"}
    )
    assert again.status_code == 200
    for body, media in (
        (b"List-Unsubscribe=One-Click\r\n", "application/x-www-form-urlencoded; charset=utf-8"),
        (b"List-Unsubscribe=One-Click", "application/x-www-form-urlencoded"),
    ):
        r = await client.post(
            "/v1/unsubscribe",
            params={"token": token},
            content=body,
            headers={"Content-Type": media},
        )
        assert r.status_code == 200, (body, r.text)
    html = await client.post(
        "/v1/unsubscribe",
        params={"token": token},
        content=b"List-Unsubscribe=One-Click",
        headers={**ONE_CLICK, "Accept": "text/html"},
    )
    assert html.headers["content-type"].startswith("text/html")


async def test_unsubscribe_refuses_forged_tokens_and_missing_one_click(
    app: ApiApp, client: httpx.AsyncClient
) -> None:
    await client.put("/v1/customers/c1", json={"consents": {"news": True}}, headers=auth())
    await client.put("/v1/customers/c2", json={"consents": {"news": True}}, headers=auth())
    token = await _token(app, "c1", "news")
    forged = make_unsubscribe_token(b"k" * 32, "c2", "news")
    sig = token.partition(".")[2]
    other_body = forged.partition(".")[0]
    for bad in (forged, f"{other_body}.{sig}", "garbage", "a.b"):
        r = await client.post(
            "/v1/unsubscribe",
            params={"token": bad},
            content=b"List-Unsubscribe=One-Click",
            headers=ONE_CLICK,
        )
        assert r.status_code in (403, 422), bad
        assert r.json()["error"]["code"] in ("forbidden", "invalid")
        page = await client.get("/v1/unsubscribe", params={"token": bad})
        assert page.status_code == r.status_code
    assert (await client.post("/v1/unsubscribe")).status_code == 422
    r = await client.post(
        "/v1/unsubscribe", params={"token": token}, content=b"", headers=ONE_CLICK
    )
    assert r.status_code == 400
    rows = await app.db.fetchall("SELECT granted FROM customer_consents")
    assert [r[0] for r in rows] == [1, 1]

    gone = await _token(app, "ghost", "news")
    r = await client.post(
        "/v1/unsubscribe",
        params={"token": gone},
        content=b"List-Unsubscribe=One-Click",
        headers=ONE_CLICK,
    )
    assert r.status_code == 404
