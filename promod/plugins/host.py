"""The plugin host: the only code that touches pluggy's ``pm.hook``.

It loads the built-in plugins (registered exactly like outside ones), the
``promod`` entry points of installed packages and the ``*.py`` files of the
configured ``plugins.dirs``, refuses implementations of unknown hooks, and
offers one typed method per hook::

    host = PluginHost.load(config.plugins.dirs, config.plugins.disable)
    providers = host.reward_providers

Hooks are called through pluggy (``pm.hook.NAME(...)``), so ``tryfirst`` and
``trylast`` order the implementations as pluggy documents, and every plugin is
registered isolated (:mod:`promod.plugins.calls`): one that raises is logged or
refused without stopping the others. With ``PROMOD_TRACE_PLUGINS=1`` in the
environment every hook call is traced into the log (``plugin_trace`` lines).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from promod.logs import get_logger
from promod.plugins import hookspecs
from promod.plugins.calls import Answer, Failure, IsolatedPlugin, trace_hook_calls

if TYPE_CHECKING:
    from promod.app import App

log = get_logger("promod.plugins")

TRACE_ENV = "PROMOD_TRACE_PLUGINS"

# Built-in plugins, registered through the same hooks outside plugins use.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "promod.builtin.commands",
    "promod.builtin.customers",
    "promod.builtin.lists",
    "promod.builtin.rewards",
    "promod.builtin.campaigns",
    "promod.builtin.notify",
    "promod.builtin.code_pool",
    "promod.builtin.live",
    "promod.builtin.clearance",
    "promod.builtin.crm",
    "promod.builtin.tags",
)


class PluginError(Exception):
    """A plugin could not be loaded or implements a hook that does not exist."""


@dataclass
class PluginInfo:
    """What the host knows of one registered plugin."""

    name: str
    source: str  # builtin | entrypoint | dir
    version: str | None
    location: str
    hooks: list[str] = field(default_factory=list)


def _module_from_file(path: Path) -> ModuleType:
    module_name = f"promod_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot load plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PluginError(f"plugin {path} failed to import: {exc!r}") from exc
    return module


class PluginHost:
    """A typed facade over one pluggy ``PluginManager`` for project ``promod``."""

    def __init__(self, pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
        self.pm = pm
        self._infos = infos
        self._registers: dict[str, list[str]] = {}
        # register_* hooks run once, here; the results are kept.
        self.reward_providers: dict[str, Any] = self._named(
            self._collect("promod_register_reward_providers"), "name", "provider"
        )
        self.channel_types: dict[str, Any] = self._named(
            self._collect("promod_register_channels"), "type", "channel"
        )
        self.crm_connector_types: dict[str, Any] = self._named(
            self._collect("promod_register_crm_connectors"), "type", "connector"
        )
        self.commands: list[tuple[str, Any]] = self._collect("promod_register_commands")
        for plugin, cmd in self.commands:
            self._registers.setdefault(plugin, []).append(f"command:{getattr(cmd, 'name', cmd)}")

    @classmethod
    def load(
        cls,
        dirs: Sequence[Path] = (),
        disable: Iterable[str] = (),
        *,
        builtins: Sequence[str] = DEFAULT_PLUGINS,
        entry_points: bool = True,
        environ: Mapping[str, str] = os.environ,
    ) -> PluginHost:
        """Register built-ins, entry points and directory plugins; raise PluginError."""
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        if environ.get(TRACE_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
            trace_hook_calls(pm, _trace_line)
        disabled = set(disable)
        for name in disabled:
            pm.set_blocked(name)
        infos: dict[str, PluginInfo] = {}

        for modname in builtins:
            if modname in disabled:
                continue
            _register(pm, importlib.import_module(modname), modname)
            infos[modname] = PluginInfo(modname, "builtin", _version(), modname)

        if entry_points:
            for dist in list(importlib.metadata.distributions()):
                for ep in dist.entry_points:
                    if ep.group != hookspecs.PROJECT or pm.has_plugin(ep.name):
                        continue
                    if pm.is_blocked(ep.name):
                        continue
                    try:
                        plugin = ep.load()
                    except Exception as exc:
                        raise PluginError(
                            f"an installed plugin failed to load: {ep.name!r}: {exc!r}"
                        ) from exc
                    _register(pm, plugin, ep.name)
                    infos[ep.name] = PluginInfo(
                        ep.name, "entrypoint", dist.version, dist.metadata["name"]
                    )

        for directory in dirs:
            if not directory.is_dir():
                raise PluginError(f"plugins.dirs: {directory} is not a directory")
            for path in sorted(directory.glob("*.py")):
                if path.name.startswith("_") or path.stem in disabled:
                    continue
                if pm.has_plugin(path.stem):
                    raise PluginError(f"plugin name {path.stem!r} ({path}) is already registered")
                module = _module_from_file(path)
                _register(pm, module, path.stem)
                infos[path.stem] = PluginInfo(
                    path.stem, "dir", getattr(module, "__version__", None), str(path)
                )

        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {pm.get_name(exc.plugin)!r}: {exc}") from exc

        for name, info in infos.items():
            plugin = pm.get_plugin(name)
            if plugin is not None:
                info.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        return cls(pm, infos)

    # -- one method per hook -------------------------------------------------

    def _call(self, hook_name: str, **kwargs: Any) -> list[Answer | Failure]:
        """Call a hook through pluggy; each plugin's answer or failure, in call order."""
        results = getattr(self.pm.hook, hook_name)(**kwargs)
        return [r if isinstance(r, Answer | Failure) else Answer("?", r) for r in results]

    def _collect(self, hook_name: str) -> list[tuple[str, Any]]:
        """Call a register_* hook; each object tagged with its plugin. A raising plugin stops us."""
        out: list[tuple[str, Any]] = []
        for result in self._call(hook_name):
            if isinstance(result, Failure):
                raise PluginError(
                    f"plugin {result.plugin!r} failed in {hook_name}: {result.error!r}"
                ) from result.error
            for obj in result.value or []:
                out.append((result.plugin, obj))
        return out

    def _named(self, items: list[tuple[str, Any]], attr: str, kind: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        owner: dict[str, str] = {}
        for plugin, obj in items:
            key = getattr(obj, attr, None)
            if not isinstance(key, str) or not key:
                raise PluginError(f"plugin {plugin!r} registered an object without a {attr}")
            if key in found:
                raise PluginError(
                    f"{attr} {key!r} is registered by both {owner[key]!r} and {plugin!r}"
                )
            found[key] = obj
            owner[key] = plugin
            self._registers.setdefault(plugin, []).append(f"{kind}:{key}")
        return found

    def eligibility_check(self, customer: Any, campaign: Any) -> list[str]:
        """Reasons to veto ``customer``, in call order; a raising plugin vetoes with its error."""
        reasons: list[str] = []
        for result in self._call("promod_eligibility_check", customer=customer, campaign=campaign):
            if isinstance(result, Failure):
                log.error(
                    "eligibility_check_failed", plugin=result.plugin, error=repr(result.error)
                )
                reasons.append(f"plugin_error:{result.plugin}")
            elif result.value:
                reasons.append(str(result.value))
        return reasons

    def has_eligibility_checks(self) -> bool:
        return bool(self.pm.hook.promod_eligibility_check.get_hookimpls())

    def startup(self, app: App) -> None:
        self._call_isolated("promod_startup", app=app)

    def shutdown(self, app: App) -> None:
        self._call_isolated("promod_shutdown", app=app)

    def _call_isolated(self, hook_name: str, **kwargs: Any) -> None:
        for result in self._call(hook_name, **kwargs):
            if isinstance(result, Failure):
                log.error(
                    "plugin_hook_failed",
                    plugin=result.plugin,
                    hook=hook_name,
                    error=repr(result.error),
                )

    def describe(self) -> list[dict[str, Any]]:
        """Every plugin with its version, source, hooks and what it registers."""
        return [
            {
                "name": info.name,
                "source": info.source,
                "version": info.version,
                "location": info.location,
                "hooks": info.hooks,
                "registers": sorted(self._registers.get(info.name, [])),
                "types": self._types_of(info.name),
            }
            for info in self._infos.values()
        ]

    def _types_of(self, plugin: str) -> list[dict[str, Any]]:
        """Each provider, channel and connector type a plugin registers, with its options."""
        from promod.plugins.options import options_model_of
        from promod.schema import options_schema

        registries = {
            "provider": self.reward_providers,
            "channel": self.channel_types,
            "connector": self.crm_connector_types,
        }
        out = []
        for entry in sorted(self._registers.get(plugin, [])):
            kind, _, name = entry.partition(":")
            registry = registries.get(kind)
            if registry is None or name not in registry:
                continue
            model = options_model_of(registry[name])
            out.append({"kind": kind, "type": name, "options": options_schema(model)})
        return out


def _version() -> str:
    from promod import __version__

    return __version__


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    try:
        pm.register(IsolatedPlugin(plugin, name, pm), name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r}: {exc}") from exc


def _trace_line(text: str) -> None:
    for line in text.rstrip("\n").splitlines():
        log.info("plugin_trace", trace=line)
