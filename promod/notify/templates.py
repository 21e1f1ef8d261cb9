"""Message templates in files: ``notify.template = "winback"`` reads ``winback.toml``.

A template file lives in ``[notify] templates_dir`` (default ``templates/`` next
to the config file) and holds ``subject``, ``text`` and/or ``html`` strings with
the same ``${name}`` placeholders as inline texts; it is checked with
:func:`promod.campaigns.spec.placeholder_issues` (a notification campaign's template
holds Jinja2 texts instead, checked by :mod:`promod.notify.render`)::

    texts = load_template(templates_dir(config), "winback")   # {"subject": ..., "text": ...}
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from promod.campaigns.spec import placeholder_issues

__all__ = ["TemplateError", "load_template", "templates_dir"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_KEYS = ("subject", "text", "html")


class TemplateError(ValueError):
    """A template that is missing, unreadable or invalid; the message says why."""


def templates_dir(config: Any) -> Path:
    """The configured templates directory, or ``templates`` beside the config file."""
    configured: Path | None = config.notify.templates_dir
    if configured is not None:
        return configured
    return Path(config.source).parent / "templates"


def load_template(directory: Path, name: str, *, placeholders: bool = True) -> dict[str, str]:
    """The texts of template ``name`` (keys among subject, text, html); TemplateError.

    ``placeholders=False``: the texts are Jinja2 templates of a notification campaign
    (checked by promod.notify.render), not ``${name}`` texts.
    """
    if not _NAME.fullmatch(name):
        raise TemplateError(f"invalid template name {name!r}")
    path = directory / f"{name}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TemplateError(f"template {name!r}: no file {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TemplateError(f"template {name!r} ({path}): {exc}") from None
    problems: list[str] = []
    texts: dict[str, str] = {}
    for key, value in data.items():
        if key not in _KEYS:
            problems.append(f"unknown key {key!r} (keys: {', '.join(_KEYS)})")
        elif not isinstance(value, str):
            problems.append(f"{key}: expected a string")
        else:
            if placeholders:
                problems.extend(f"{key}: {p}" for p in placeholder_issues(value))
            texts[key] = value
    if not problems and "text" not in texts and "html" not in texts:
        problems.append("needs text and/or html")
    if problems:
        raise TemplateError(f"template {name!r} ({path}): " + "; ".join(problems))
    return texts
