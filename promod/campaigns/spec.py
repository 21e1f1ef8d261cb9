"""Campaign specs: parse, validate and normalise what an operator applies (docs/campaigns.md).

Owns the campaign spec language: TOML or JSON text (or an already parsed dict)
is validated by the models of :mod:`promod.campaigns.spec_models` and becomes a
frozen :class:`CampaignSpec`, or a :class:`SpecError` that lists every issue at
once with its key path (``reward.fallback.value: ...``). Unknown keys
are errors; money is decimal strings outside and integers of minor units inside;
notify texts may only use the placeholders of :data:`PLACEHOLDERS`.
:meth:`CampaignSpec.to_dict` gives the normalised form stored per version, which
parses back to an equal spec::

    spec = load_spec(Path("winback-30d.toml").read_text(), "toml",
                     default_timezone="UTC", providers={"wallet_points"}, channels={"mail"})
    spec.reward.value_minor        # 500 for value = "5.00" in EUR
    parse_spec(spec.to_dict(), default_timezone="UTC") == spec   # True
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from promod.campaigns.spec_types import (
    BUILTIN_PROVIDERS,
    CURRENCY_EXPONENTS,
    DELIVERIES,
    KINDS,
    PLACEHOLDERS,
    AudienceRank,
    CampaignSpec,
    Caps,
    Clearance,
    Notify,
    Recurrence,
    Reward,
    Schedule,
    SpecError,
    SpecIssue,
    Trigger,
    currency_exponent,
    placeholder_issues,
    render_placeholders,
)
from promod.schema import SPEC_WORDS, issues_of
from promod.surrogates import SURROGATE_MESSAGE, find_surrogate

__all__ = [
    "BUILTIN_PROVIDERS",
    "CURRENCY_EXPONENTS",
    "DELIVERIES",
    "KINDS",
    "PLACEHOLDERS",
    "AudienceRank",
    "CampaignSpec",
    "Caps",
    "Clearance",
    "Notify",
    "Recurrence",
    "Reward",
    "Schedule",
    "SpecError",
    "SpecIssue",
    "Trigger",
    "currency_exponent",
    "load_spec",
    "load_spec_file",
    "parse_spec",
    "placeholder_issues",
    "render_placeholders",
    "spec_warnings",
]


def load_spec(
    text: str,
    fmt: Literal["toml", "json"],
    *,
    default_timezone: str = "UTC",
    providers: Mapping[str, Any] | Iterable[str] | None = None,
    channels: set[str] | None = None,
) -> CampaignSpec:
    """Parse TOML or JSON text and validate it with :func:`parse_spec`."""
    data: Any
    if fmt == "toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError([("", f"invalid TOML: {exc}")]) from None
        except RecursionError:
            raise SpecError([("", "invalid TOML: nested too deeply to read")]) from None
    elif fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError([("", f"invalid JSON: {exc}")]) from None
        except RecursionError:
            raise SpecError([("", "invalid JSON: nested too deeply to read")]) from None
        where = find_surrogate(data)
        if where is not None:
            raise SpecError([(where if where != "(value)" else "", SURROGATE_MESSAGE)])
    else:
        raise ValueError(f"unknown spec format {fmt!r} (toml, json)")
    return parse_spec(
        data, default_timezone=default_timezone, providers=providers, channels=channels
    )


def load_spec_file(
    path: Path,
    *,
    default_timezone: str = "UTC",
    providers: Mapping[str, Any] | Iterable[str] | None = None,
    channels: set[str] | None = None,
) -> CampaignSpec:
    """Read a ``.toml`` or ``.json`` spec file (by extension) and validate it."""
    fmt: Literal["toml", "json"] = "json" if path.suffix.lower() == ".json" else "toml"
    return load_spec(
        path.read_text(encoding="utf-8"),
        fmt,
        default_timezone=default_timezone,
        providers=providers,
        channels=channels,
    )


def parse_spec(
    data: Mapping[str, Any],
    *,
    default_timezone: str = "UTC",
    providers: Mapping[str, Any] | Iterable[str] | None = None,
    channels: set[str] | None = None,
) -> CampaignSpec:
    """Validate a parsed spec; raise :class:`SpecError` listing every issue.

    ``default_timezone`` applies when the spec has no ``timezone``. ``providers``
    (name -> provider) and ``channels``, when given, are the registered reward
    providers and the configured channel names that ``reward.provider`` and
    ``notify.channel`` must name; each provider's ``options_model`` checks the
    reward's own keys (``code``, ``pool``, ``options``). Without ``providers`` the
    built-in providers are checked and any other name is accepted.
    """
    from pydantic import ValidationError

    from promod.campaigns.spec_models import SpecModel

    if not isinstance(data, Mapping):
        raise SpecError([("", f"a campaign spec must be a table, not {SPEC_WORDS.kind(data)}")])
    context: dict[str, Any] = {
        "default_timezone": default_timezone,
        "providers": _named(providers),
        "channels": channels,
    }
    try:
        model = SpecModel.model_validate(data, context=context)
    except ValidationError as exc:
        raise SpecError(issues_of(exc, SPEC_WORDS)) from None
    return model.to_spec(context)


def _named(providers: Mapping[str, Any] | Iterable[str] | None) -> Mapping[str, Any] | None:
    """Providers by name; of bare names, only built-in ones have their options checked."""
    from promod.campaigns.spec_models import builtin_providers

    if providers is None or isinstance(providers, Mapping):
        return providers
    builtins = builtin_providers()
    return {name: builtins.get(name) for name in providers}


def spec_warnings(spec: CampaignSpec) -> list[SpecIssue]:
    """Legal but risky choices worth showing at apply (no lifetime cap, no clearance...)."""
    warnings: list[SpecIssue] = []
    caps = spec.caps
    granting = spec.kind != "notification"  # a notification campaign spends nothing
    if granting and caps.audience is None and caps.count is None and caps.budget_minor is None:
        warnings.append(
            SpecIssue("caps", "no lifetime cap (audience, count or budget): spend is unbounded")
        )
    if spec.reward.value_minor is not None and caps.budget_minor is None:
        warnings.append(SpecIssue("caps.budget", "the reward has a value but no budget cap"))
    if not spec.clearance.required and granting:
        warnings.append(
            SpecIssue("clearance.required", "grants go out without clearance by the site")
        )
    elif spec.clearance.on_timeout == "approve":
        warnings.append(
            SpecIssue("clearance.on_timeout", "customers the site does not answer are granted")
        )
    if spec.segment_source is not None and not spec.segment_source and spec.list_name is None:
        warnings.append(SpecIssue("segment", "an empty segment targets every customer"))
    if spec.notify is not None and spec.notify.consent is None:
        warnings.append(
            SpecIssue("notify.consent", "messages go to every granted customer, without consent")
        )
    return warnings


# --------------------------------------------------------------------------- helpers
