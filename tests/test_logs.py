"""Tests for promod.logs: one processor chain for structlog and stdlib, JSON or console."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from promod.logs import (
    REDACTED,
    configure_logging,
    get_level,
    get_logger,
    redact_secrets,
    reset_logging,
    set_level,
)


class TTYStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    structlog.contextvars.clear_contextvars()
    yield
    reset_logging()
    structlog.contextvars.clear_contextvars()


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_level_logger_timestamp_and_context() -> None:
    stream = io.StringIO()
    configure_logging("info", "auto", stream)
    structlog.contextvars.bind_contextvars(actor="ledger")
    get_logger("promod.ledger").info("grant.issued", campaign="winback-30d", grant=42)
    [line] = _lines(stream)
    assert line["event"] == "grant.issued"
    assert line["level"] == "info"
    assert line["logger"] == "promod.ledger"
    assert line["actor"] == "ledger"
    assert line["campaign"] == "winback-30d" and line["grant"] == 42
    assert line["timestamp"].endswith("Z")


def test_stdlib_loggers_of_libraries_go_through_the_same_chain() -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    structlog.contextvars.bind_contextvars(actor="notifier")
    logging.getLogger("aiosmtplib").warning("connection to %s lost", "smtp.example.org")
    [line] = _lines(stream)
    assert line["event"] == "connection to smtp.example.org lost"
    assert line["level"] == "warning"
    assert line["logger"] == "aiosmtplib"
    assert line["actor"] == "notifier"
    assert "timestamp" in line


def test_auto_format_renders_console_on_a_tty_and_json_otherwise() -> None:
    tty = TTYStream()
    configure_logging("info", "auto", tty)
    get_logger("promod").info("daemon.ready", port=8470)
    output = tty.getvalue()
    assert "daemon.ready" in output and "port" in output
    with pytest.raises(json.JSONDecodeError):
        json.loads(output.splitlines()[0])

    forced_json = TTYStream()
    configure_logging("info", "json", forced_json)
    get_logger("promod").info("daemon.ready")
    assert _lines(forced_json)[0]["event"] == "daemon.ready"

    console = io.StringIO()
    configure_logging("info", "console", console)
    get_logger("promod").info("daemon.ready")
    assert "daemon.ready" in console.getvalue()
    assert "\x1b[" not in console.getvalue()


def test_reconfiguring_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", first)
    configure_logging("info", "json", second)
    get_logger("promod").info("once")
    logging.getLogger("uvicorn.error").info("also once")
    assert first.getvalue() == ""
    assert [line["event"] for line in _lines(second)] == ["once", "also once"]


def test_level_changes_at_run_time_for_structlog_and_stdlib_loggers() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    log = get_logger("promod.scheduler")
    assert get_level() == "info"
    log.debug("hidden")
    log.info("shown.info")

    set_level("warning")
    assert get_level() == "warning"
    log.info("hidden")
    logging.getLogger("aiosqlite").info("hidden")
    log.warning("shown.warning")

    set_level("DEBUG")
    assert get_level() == "debug"
    log.debug("shown.debug")
    logging.getLogger("aiosqlite").debug("shown.stdlib.debug")

    events = [line["event"] for line in _lines(stream)]
    assert events == ["shown.info", "shown.warning", "shown.debug", "shown.stdlib.debug"]


def test_unknown_level_or_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level 'verbose'"):
        set_level("verbose")
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("loud", "json", io.StringIO())
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        configure_logging("info", "xml", io.StringIO())


def test_secrets_are_redacted_in_structlog_events() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    get_logger("promod.http").info(
        "request",
        token="t0k3n",
        api_token="t0k3n",
        client_secret="s3cr3t",
        password="hunter2",
        code="XMAS25-ABCD",
        reward_code="XMAS25-ABCD",
        headers={"Authorization": "Bearer t0k3n", "Accept": "application/json"},
        batch=[{"code": "C1"}, {"customer_id": "c42"}],
        customer_id="c42",
    )
    [line] = _lines(stream)
    for key in ("token", "api_token", "client_secret", "password", "code", "reward_code"):
        assert line[key] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert line["batch"] == [{"code": REDACTED}, {"customer_id": "c42"}]
    assert line["customer_id"] == "c42"
    text = stream.getvalue()
    for secret in ("t0k3n", "s3cr3t", "hunter2", "XMAS25-ABCD", "C1"):
        assert secret not in text


def test_secrets_are_redacted_in_stdlib_extra_and_contextvars() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    structlog.contextvars.bind_contextvars(session_token="ctx-secret")
    logging.getLogger("uvicorn.access").info(
        "request done", extra={"password": "hunter2", "path": "/v1/events"}
    )
    [line] = _lines(stream)
    assert line["password"] == REDACTED
    assert line["session_token"] == REDACTED
    assert line["path"] == "/v1/events"
    assert "hunter2" not in stream.getvalue() and "ctx-secret" not in stream.getvalue()


def test_redact_processor_leaves_the_event_and_other_keys() -> None:
    event = {"event": "code.redeemed", "secret": "x", "amount": "5.00"}
    assert redact_secrets(None, "info", event) == {
        "event": "code.redeemed",
        "secret": REDACTED,
        "amount": "5.00",
    }


def test_exceptions_are_rendered_into_the_json_line() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        raise RuntimeError("provider down")
    except RuntimeError:
        get_logger("promod.ledger").exception("grant.failed", grant=7)
    [line] = _lines(stream)
    assert line["level"] == "error"
    assert "RuntimeError: provider down" in line["exception"]


def test_console_tracebacks_show_no_local_variables() -> None:
    stream = TTYStream()
    configure_logging("info", "console", stream)

    def issue(token: str) -> None:
        raise RuntimeError("provider down")

    secret = "tok-" + "9f2c41d7"
    try:
        issue(secret)
    except RuntimeError:
        get_logger("promod.ledger").exception("grant.failed", grant=7)
    text = stream.getvalue()
    assert "RuntimeError: provider down" in text
    assert "tok-9f2c41d7" not in text


def test_python_warnings_are_logged() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old option", DeprecationWarning, stacklevel=1)
    [line] = _lines(stream)
    assert line["logger"] == "py.warnings"
    assert "old option" in line["event"]


def test_get_logger_works_with_capture_logs() -> None:
    configure_logging("info", "json", io.StringIO())
    with capture_logs() as captured:
        get_logger("promod.codepool").info("codepool.low", pool="XMAS25", remaining=10)
    assert captured == [
        {"event": "codepool.low", "pool": "XMAS25", "remaining": 10, "log_level": "info"}
    ]
