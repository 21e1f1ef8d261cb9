"""Options of plugin types: each channel, connector and provider type declares its own model.

A type registered through ``promod_register_channels``,
``promod_register_crm_connectors`` or ``promod_register_reward_providers`` may
set ``options_model`` to a pydantic model (built on :class:`promod.schema.Model`).
promod validates the options of every instance with it — ``[channels.NAME]`` and
``[crm.NAME]`` at ``check-config``, start-up and SIGHUP, a campaign's reward at
``campaign apply`` — and reports each problem with its key path. The core knows
no type's options; a type without a model gets its options as written::

    class SmsOptions(Model):
        sender: NonEmpty
        rate: PositiveNumber | None = None

    class SmsType:
        type = "sms"
        options_model = SmsOptions

        def create(self, name, options):  # options: the validated model, dumped
            ...

:func:`describe_options` gives what ``promodctl plugins`` shows: every type with
the JSON Schema of its options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ValidationError

from promod.schema import CONFIG_WORDS, Issue, Words, issues_of, join_path, options_schema

if TYPE_CHECKING:
    from promod.config import Config

__all__ = [
    "CheckedOptions",
    "PluginTypes",
    "check_instance_options",
    "describe_options",
    "load_plugin_types",
    "options_model_of",
    "validate_options",
]


class PluginTypes(Protocol):
    """What option checks need of the plugin host: the registered types by name."""

    channel_types: dict[str, Any]
    crm_connector_types: dict[str, Any]
    reward_providers: dict[str, Any]


def options_model_of(plugin_type: object) -> type[BaseModel] | None:
    """The options model a type declares, or None."""
    model = getattr(plugin_type, "options_model", None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return model
    return None


def validate_options(
    plugin_type: object,
    options: Mapping[str, Any],
    prefix: tuple[str | int, ...],
    *,
    context: Mapping[str, Any] | None = None,
    words: Words = CONFIG_WORDS,
) -> tuple[BaseModel | None, list[Issue]]:
    """Validate ``options`` with the type's model: (the model, []) or (None, issues)."""
    model = options_model_of(plugin_type)
    if model is None:
        return None, []
    full_context = {"plugin": plugin_type, **(context or {})}
    try:
        return model.model_validate(dict(options), context=full_context), []
    except ValidationError as exc:
        return None, issues_of(exc, words, prefix)


@dataclass
class CheckedOptions:
    """Validated options per instance name, and what routes to them need."""

    types: PluginTypes
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    crm: dict[str, dict[str, Any]] = field(default_factory=dict)

    def route_issues(self, config: Config) -> list[Issue]:
        """Alerts and events sent to a channel its type cannot deliver them on."""
        routes: list[tuple[str, str]] = []
        for event, names in config.alerts.items():
            routes += [(join_path(("alerts", event)), name) for name in names]
        for key in ("clearance", "events"):
            name = getattr(config.webhooks, key)
            if name:
                routes.append((f"webhooks.{key}", name))
        found: list[Issue] = []
        for path, name in routes:
            channel = config.channels.get(name)
            kind = self.types.channel_types.get(channel.type) if channel else None
            check = getattr(kind, "route_problem", None)
            if channel is not None and callable(check):
                problem = check(name, channel.options)
                if problem:
                    found.append((path, str(problem)))
        return found


def _instances(
    data: Mapping[str, Any],
    section: str,
    key: str,
    own: tuple[str, ...],
    types: dict[str, Any],
    what: str,
    context: Mapping[str, Any],
) -> tuple[dict[str, dict[str, Any]], list[Issue]]:
    checked: dict[str, dict[str, Any]] = {}
    issues: list[Issue] = []
    tables = data.get(section)
    if not isinstance(tables, Mapping):
        return checked, issues
    for name, table in tables.items():
        if not isinstance(table, Mapping) or not isinstance(table.get(key), str):
            continue  # the section's own model reports these
        kind_name = table[key]
        options = {k: v for k, v in table.items() if k not in own}
        kind = types.get(kind_name)
        if kind is None:
            known = ", ".join(sorted(types)) or "none"
            issues.append(
                (
                    join_path((section, name, key)),
                    f"no plugin provides {what} {kind_name!r} (known: {known})",
                )
            )
            continue
        model, problems = validate_options(kind, options, (section, name), context=context)
        issues.extend(problems)
        checked[name] = options if model is None else model.model_dump(by_alias=True)
    return checked, issues


def check_instance_options(
    data: Mapping[str, Any], types: PluginTypes, context: Mapping[str, Any]
) -> tuple[CheckedOptions, list[Issue]]:
    """Check every ``[channels.NAME]`` and ``[crm.NAME]`` of raw config ``data``."""
    from promod.config import CRM_KEYS

    channels, issues = _instances(
        data, "channels", "type", ("type",), types.channel_types, "channel type", context
    )
    crm, crm_issues = _instances(
        data,
        "crm",
        "connector",
        CRM_KEYS,
        types.crm_connector_types,
        "CRM connector",
        context,
    )
    return CheckedOptions(types, channels, crm), issues + crm_issues


def load_plugin_types(
    data: Mapping[str, Any], context: Mapping[str, Any]
) -> tuple[PluginTypes | None, Issue | None]:
    """The plugin host the ``[plugins]`` section of ``data`` describes (for option checks).

    An invalid ``[plugins]`` section loads the built-in and installed plugins only
    (the section's own errors are reported by its model); a plugin that fails to
    load is an issue at ``plugins``.
    """
    from promod.config import PluginsConfig
    from promod.plugins.host import PluginError, PluginHost

    section = data.get("plugins", {})
    try:
        plugins = PluginsConfig.model_validate(section, context=dict(context))
    except ValidationError:
        plugins = PluginsConfig()
    try:
        return PluginHost.load(plugins.dirs, plugins.disable), None
    except PluginError as exc:
        return None, ("plugins", str(exc))


def describe_options(types: PluginTypes) -> dict[str, dict[str, Any]]:
    """``{"channel": {type: schema}, "connector": {...}, "provider": {...}}`` for display."""
    return {
        "channel": {
            name: options_schema(options_model_of(kind))
            for name, kind in sorted(types.channel_types.items())
        },
        "connector": {
            name: options_schema(options_model_of(kind))
            for name, kind in sorted(types.crm_connector_types.items())
        },
        "provider": {
            name: options_schema(options_model_of(kind))
            for name, kind in sorted(types.reward_providers.items())
        },
    }
