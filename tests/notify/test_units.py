"""Tokens, signatures, Retry-After, backoff, templates, suppression and the [notify] config."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from promod.config import ConfigError
from promod.notify.channel import TokenBucket
from promod.notify.deliveries import backoff_delay
from promod.notify.templates import TemplateError, load_template
from promod.notify.unsubscribe import (
    InvalidToken,
    is_suppressed_sync,
    make_unsubscribe_token,
    record_unsubscribe_sync,
    unsubscribe_key_sync,
    verify_unsubscribe_token,
)
from promod.notify.webhook import parse_retry_after, sign, verify_signature
from promod.store.database import Database
from tests.notify.conftest import add_customer, make_config

KEY = b"k" * 32


def test_unsubscribe_token_round_trip_and_tampering() -> None:
    token = make_unsubscribe_token(KEY, "c42", "marketing_email")
    assert verify_unsubscribe_token(KEY, token) == ("c42", "marketing_email")
    assert verify_unsubscribe_token(KEY, make_unsubscribe_token(KEY, "c1", None)) == ("c1", None)
    body, sig = token.split(".")
    other = make_unsubscribe_token(KEY, "c43", "marketing_email").split(".")[0]
    for bad in (f"{other}.{sig}", f"{body}.AAAA", "nodot", "", f"{body}."):
        with pytest.raises(InvalidToken):
            verify_unsubscribe_token(KEY, bad)
    with pytest.raises(InvalidToken):
        verify_unsubscribe_token(b"x" * 32, token)


def test_signature_is_hmac_over_timestamp_dot_body() -> None:
    body = b'{"event_id":"evt_1"}'
    header = sign(b"secret", body, 1_800_000_000)
    import hashlib
    import hmac

    digest = hmac.new(b"secret", b"1800000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1800000000,v1={digest}"
    assert verify_signature(b"secret", header, body, now=1_800_000_010)
    assert not verify_signature(b"secret", header, body + b" ", now=1_800_000_010)
    assert not verify_signature(b"other", header, body, now=1_800_000_010)
    assert not verify_signature(b"secret", header, body, now=1_800_001_000)  # too old


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412500.0) == 10.0
    assert parse_retry_after("99999999") == 86400.0


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    for attempts, base in ((1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0)):
        for _ in range(20):
            assert base / 2 <= backoff_delay(attempts, 1.0, 30.0) <= base


def test_templates_are_checked(tmp_path: Path) -> None:
    (tmp_path / "ok.toml").write_text('subject = "Hi ${customer_id}"\nhtml = "<p>${email}</p>"\n')
    (tmp_path / "bad.toml").write_text('text = "Hi ${name}"\nfooter = "x"\n')
    (tmp_path / "empty.toml").write_text('subject = "Hi"\n')
    assert load_template(tmp_path, "ok") == {
        "subject": "Hi ${customer_id}",
        "html": "<p>${email}</p>",
    }
    with pytest.raises(
        TemplateError,
        match=r"unknown placeholder \$\{name\}.*unknown key 'footer'|unknown key 'footer'.*",
    ):
        load_template(tmp_path, "bad")
    with pytest.raises(TemplateError, match="needs text and/or html"):
        load_template(tmp_path, "empty")
    with pytest.raises(TemplateError, match="no file"):
        load_template(tmp_path, "missing")
    with pytest.raises(TemplateError, match="invalid template name"):
        load_template(tmp_path, "../etc/passwd")


@pytest.mark.anyio
async def test_unsubscribe_withdraws_consent_and_suppresses_until_granted_again(
    db: Database,
) -> None:
    await add_customer(db, "c1", "C1@Example.org", {"marketing_email": True})
    key = await db.run_sync(unsubscribe_key_sync)
    assert key == await db.run_sync(unsubscribe_key_sync)  # kept in meta
    now = time.time()
    assert await db.run_sync(
        lambda conn: record_unsubscribe_sync(conn, "c1", "marketing_email", now=now)
    )
    assert not await db.run_sync(
        lambda conn: record_unsubscribe_sync(conn, "nobody", "marketing_email", now=now)
    )
    consent = await db.fetchone("SELECT granted, source, updated_at FROM customer_consents")
    assert (consent["granted"], consent["source"]) == (0, "unsubscribe")
    row = await db.fetchone("SELECT address, reason, detail FROM suppressions")
    assert tuple(row) == ("c1@example.org", "unsubscribed", "marketing_email")

    def suppressed(conn: object) -> str | None:
        return is_suppressed_sync(conn, "c1@example.org", "c1", "marketing_email")  # type: ignore[arg-type]

    assert await db.run_sync(suppressed) == "unsubscribed"
    await db.execute(
        "UPDATE customer_consents SET granted = 1, source = 'api',"
        " updated_at = '2999-01-01T00:00:00Z'"
    )
    assert await db.run_sync(suppressed) is None


def test_notify_config_keys_and_smtp_alert_routes(tmp_path: Path) -> None:
    config = make_config(tmp_path, smtp_port=2525, notify='templates_dir = "tpl"\nbatch_size = 7')
    assert config.notify.max_attempts == 4
    assert config.notify.backoff_initial == 0.05
    assert config.notify.templates_dir == tmp_path / "tpl"
    assert config.notify.batch_size == 7
    assert config.channels["mail"].options["alerts_to"] == ("ops@example.org",)
    with pytest.raises(ConfigError) as bad:
        make_config(tmp_path, notify="batch_size = 0\ntemplates_dir = 5\nretries = 3")
    assert {i.path for i in bad.value.issues} == {
        "notify.batch_size",
        "notify.templates_dir",
        "notify.retries",
    }
    extra = (
        '[channels.ops]\ntype = "smtp"\nfrom = "a@example.org"\n[alerts]\n"cap.reached" = ["ops"]\n'
    )
    with pytest.raises(ConfigError) as no_rcpt:
        make_config(tmp_path, extra=extra)
    assert [i.path for i in no_rcpt.value.issues] == ['alerts."cap.reached"']


@pytest.mark.anyio
async def test_token_bucket_lets_a_burst_through_then_paces_to_the_rate() -> None:
    """On the system clock: 15 calls at 50/s take 14 intervals one by one, 10 after a burst of 5."""

    async def elapsed(bucket: TokenBucket, calls: int) -> float:
        began = time.monotonic()
        for _ in range(calls):
            await bucket.wait()
        return time.monotonic() - began

    paced = await elapsed(TokenBucket(rate=50, burst=1), 15)
    burst = await elapsed(TokenBucket(rate=50, burst=5), 15)
    assert paced >= 14 / 50 * 0.95
    assert burst >= 10 / 50 * 0.95
    assert paced - burst >= 3 / 50  # at least most of the 4 extra tokens went at once
    unpaced = TokenBucket(rate=None)
    assert await elapsed(unpaced, 1000) < paced
