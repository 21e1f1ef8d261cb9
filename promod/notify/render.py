"""Jinja2 templates of notification campaigns: sandboxed, strict, checked before use.

A notification campaign's ``subject``, ``text`` and ``html`` (inline, or in a
template file) are Jinja2 templates rendered per customer in a
:class:`~jinja2.sandbox.SandboxedEnvironment` with ``StrictUndefined``; ``html``
is autoescaped. The variables are :data:`VARIABLES` (docs/notifications.md)::

    problems = template_issues("Hello {{ customer.name }}", html=False)
    # ["line 1: 'dict object' has no attribute 'name'"] (customer has id, email, ...)
    text = render("{% for s in missing_steps %}- {{ s.text }}\\n{% endfor %}", context)

:func:`template_issues` refuses a syntax error, an unknown variable (from the
template's AST) and whatever fails against a sample context, each with its line;
``campaign apply`` calls it, so a template that passes renders for every customer.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["VARIABLES", "RenderError", "render", "sample_context", "template_issues"]

VARIABLES = frozenset(
    {
        "customer",
        "tags",
        "consents",
        "wallet",
        "rewards",
        "steps",
        "missing_steps",
        "campaign",
        "unsubscribe_url",
        "preferences_url",
    }
)
_NAME = "<template>"


class RenderError(ValueError):
    """A template that failed to render; the message names its line."""


class _Attributes(dict[str, Any]):
    """Sample profile attributes: any key exists (attributes are the site's own)."""

    def __missing__(self, key: str) -> str:
        return ""


def _environment(html: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=html,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


_TEXT = _environment(False)
_HTML = _environment(True)


def _line(exc: BaseException) -> int | None:
    """The template line a render error happened at (Jinja rewrites the traceback)."""
    line = getattr(exc, "lineno", None)
    if isinstance(line, int):
        return line
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == _NAME:
            found = frame.lineno
    return found


def _describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    line = _line(exc)
    return f"line {line}: {message}" if line is not None else str(message)


def sample_context() -> dict[str, Any]:
    """A context with every variable, each list holding one entry."""
    step = {"id": "complete_profile", "text": "Complete your profile", "done": False}
    return {
        "customer": {
            "id": "c1",
            "email": "c1@example.org",
            "timezone": "UTC",
            "attributes": _Attributes(),
            "created_at": "2026-01-01T00:00:00Z",
        },
        "tags": ["tag"],
        "consents": {"consent": True},
        "wallet": {"points": 0},
        "rewards": [
            {
                "campaign_id": "campaign",
                "provider": "wallet_points",
                "state": "issued",
                "amount": "100",
                "value": "1.00",
                "currency": "EUR",
                "code": None,
                "granted_at": "2026-01-01T00:00:00Z",
            }
        ],
        "steps": [step],
        "missing_steps": [step],
        "campaign": {"id": "campaign", "name": "Campaign"},
        "unsubscribe_url": "https://example.org/v1/unsubscribe?token=t",
        "preferences_url": "https://example.org/v1/preferences?token=t",
    }


def template_issues(source: str, *, html: bool) -> list[str]:
    """Problems of one template text, each ``line N: ...``; [] when it renders."""
    env = _HTML if html else _TEXT
    try:
        tree = env.parse(source, name=_NAME)
    except TemplateSyntaxError as exc:
        return [f"line {exc.lineno}: {exc.message}"]
    unknown = sorted(meta.find_undeclared_variables(tree) - VARIABLES)
    if unknown:
        known = ", ".join(sorted(VARIABLES))
        return [f"unknown variable {name!r} (known: {known})" for name in unknown]
    try:
        env.from_string(source).render(sample_context())
    except Exception as exc:  # any error of the template against a complete context
        return [_describe(exc)]
    return []


@functools.lru_cache(maxsize=256)
def _compiled(source: str, html: bool) -> Template:
    """A template compiled once per text (a mass mailing renders one text many times)."""
    return (_HTML if html else _TEXT).from_string(source)


def render(source: str, context: Mapping[str, Any], *, html: bool = False) -> str:
    """Render one template text; RenderError (with its line) when it fails."""
    try:
        return _compiled(source, html).render(dict(context))
    except TemplateError as exc:
        raise RenderError(_describe(exc)) from None
    except Exception as exc:  # a sandbox refusal or an error inside a filter
        raise RenderError(_describe(exc)) from None
