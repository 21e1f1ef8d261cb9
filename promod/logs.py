"""Logging for the daemon and its tools: structlog over the standard library, one format.

Owns the processor chain (contextvars, level, logger name, timestamp, redaction of
secrets), the renderer choice (console on a TTY, JSON lines otherwise, so journald gets one
JSON object per line), the routing of libraries' stdlib logging (aiosqlite, uvicorn,
aiosmtplib, ...) through the same chain, and the level that ``promodctl log-level`` changes
at run time.

    configure_logging(level="info", fmt="auto")
    structlog.contextvars.bind_contextvars(actor="ledger")
    get_logger(__name__).info("grant.issued", campaign="winback-30d", grant=42)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "FORMATS",
    "LEVELS",
    "REDACTED",
    "SENSITIVE_KEY_PARTS",
    "configure_logging",
    "get_level",
    "get_logger",
    "is_sensitive_key",
    "redact_secrets",
    "reset_logging",
    "set_level",
]

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("auto", "json", "console")

REDACTED = "[redacted]"
SENSITIVE_KEY_PARTS = ("token", "secret", "password", "code", "authorization")

_NOT_REDACTED = frozenset({"event", "exc_info", "_record", "_from_structlog"})

_handler: logging.Handler | None = None


# Keys that contain a sensitive word but name no secret.
NOT_SENSITIVE = frozenset({"exit_code", "status_code", "error_code", "http_status_code"})


def is_sensitive_key(key: object) -> bool:
    """True for keys whose values are never logged (any containing a sensitive word).

    ``exit_code``, ``status_code`` and ``error_code`` are plain numbers and stay.
    """
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    if lowered in NOT_SENSITIVE:
        return False
    return any(part in lowered for part in SENSITIVE_KEY_PARTS)


def _redact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: REDACTED if is_sensitive_key(k) else _redact(v) for k, v in value.items()}
    if type(value) is list:
        return [_redact(item) for item in value]
    if type(value) is tuple:
        return tuple(_redact(item) for item in value)
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace values of sensitive keys, also inside nested dicts."""
    for key in list(event_dict):
        if key in _NOT_REDACTED:
            continue
        if is_sensitive_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(event_dict[key])
    return event_dict


def _level_number(level: str) -> int:
    try:
        return LEVELS[level.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}"
        ) from None


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        redact_secrets,
    ]


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Send structlog and stdlib logging to *stream* (default stdout) through one chain.

    *fmt* ``auto`` renders for humans when the stream is a TTY and JSON lines otherwise.
    Calling it again replaces the previous configuration (its handler is removed).
    """
    global _handler
    number = _level_number(level)
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; expected one of {', '.join(FORMATS)}")
    stream = sys.stdout if stream is None else stream
    is_tty = _isatty(stream)
    renderer_chain: list[Processor]
    if fmt == "console" or (fmt == "auto" and is_tty):
        # Plain tracebacks: a rich traceback prints local variables, which may
        # hold secrets, and takes a tenth of a second to render.
        renderer_chain = [
            structlog.dev.ConsoleRenderer(
                colors=is_tty, exception_formatter=structlog.dev.plain_traceback
            )
        ]
    else:
        renderer_chain = [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ]

    shared = _shared_processors()
    structlog.configure(
        processors=[
            shared[0],
            structlog.stdlib.filter_by_level,
            *shared[1:],
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(ignore_frame_names=[__name__]),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer_chain],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    root.addHandler(handler)
    _handler = handler
    root.setLevel(number)
    logging.captureWarnings(True)


def reset_logging() -> None:
    """Undo :func:`configure_logging` (structlog defaults, handler removed, level WARNING)."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
        _handler = None
    root.setLevel(logging.WARNING)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def set_level(level: str) -> None:
    """Change the level of every logger at run time (debug, info, warning, error)."""
    logging.getLogger().setLevel(_level_number(level))


def get_level() -> str:
    """The current level name, e.g. ``"info"``."""
    number = logging.getLogger().getEffectiveLevel()
    for name, value in LEVELS.items():
        if value == number:
            return name
    return logging.getLevelName(number).lower()


def get_logger(name: str | None = None, **initial_values: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger named *name* (a stdlib logger underneath)."""
    if name is None:
        logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(**initial_values)
    else:
        logger = structlog.stdlib.get_logger(name, **initial_values)
    return logger
