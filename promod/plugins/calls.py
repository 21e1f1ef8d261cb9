"""Hook calls through pluggy with each plugin isolated, and optional hook-call tracing.

Every plugin is registered as an :class:`IsolatedPlugin`: the same hook
implementations with the same options (``tryfirst``, ``trylast``, ...), each
wrapped so that an exception becomes a :class:`Failure` result instead of
ending the hook call. The host then calls hooks the ordinary pluggy way
(``pm.hook.NAME(...)``), so pluggy orders the implementations, passes each only
the arguments it asks for, and traces the call; one raising plugin cannot keep
the others from running::

    pm.register(IsolatedPlugin(module, "my_rules", pm), name="my_rules")
    for result in pm.hook.promod_eligibility_check(customer=c, campaign=s):
        ...  # Answer(plugin, value) or Failure(plugin, hook, error), in call order

New-style wrappers (``wrapper=True``) and old-style ``hookwrapper`` generators
are registered as written: they wrap the whole call, not one plugin.

``trace_hook_calls(pm, write)`` turns on pluggy's hook-call tracing
(``PROMOD_TRACE_PLUGINS=1``): pluggy's tracer writes one line per call and one
per finish, naming the implementations in call order, the argument names and
what each plugin answered; argument values are never written (they hold the
config, with its secrets, and campaign specs, with their codes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pluggy

__all__ = ["Answer", "Failure", "IsolatedPlugin", "trace_hook_calls"]


@dataclass(frozen=True)
class Answer:
    """What one plugin's implementation returned (results of None are left out, as in pluggy)."""

    plugin: str
    value: Any

    def __str__(self) -> str:
        return f"{self.plugin}: {type(self.value).__name__}"


@dataclass(frozen=True)
class Failure:
    """One plugin's implementation raised ``error``; the call went on without it."""

    plugin: str
    hook: str
    error: Exception

    def __str__(self) -> str:
        return f"{self.plugin}: raised {type(self.error).__name__}"


def _isolated(function: Callable[..., Any], plugin: str, hook: str) -> Callable[..., Any]:
    # functools.wraps copies the hookimpl marker and sets __wrapped__, from which
    # pluggy reads the argument names the implementation asks for.
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Answer | Failure | None:
        try:
            value = function(*args, **kwargs)
        except Exception as exc:
            return Failure(plugin, hook, exc)
        return None if value is None else Answer(plugin, value)

    return call


class IsolatedPlugin:
    """A plugin as pluggy sees it: its hook implementations, each isolated."""

    def __init__(self, plugin: object, name: str, pm: pluggy.PluginManager) -> None:
        self.plugin = plugin  # the module or object as written
        self.plugin_name = name
        for attr in dir(plugin):
            opts = pm.parse_hookimpl_opts(plugin, attr)
            if opts is None:
                continue
            function = getattr(plugin, attr)
            if not (opts.get("wrapper") or opts.get("hookwrapper")):
                function = _isolated(function, name, attr)
            setattr(self, attr, function)

    def __repr__(self) -> str:
        return f"<IsolatedPlugin {self.plugin_name!r}>"


def _describe(result: object) -> str:
    if isinstance(result, Answer | Failure):
        return str(result)
    return type(result).__name__  # never a value: it may hold a secret


def _call_order(impls: Sequence[pluggy.HookImpl]) -> list[str]:
    # pluggy keeps implementations in reverse call order (it calls the last first).
    return [impl.plugin_name for impl in reversed(impls)]


def trace_hook_calls(
    pm: pluggy.PluginManager, write: Callable[[str], object]
) -> Callable[[], None]:
    """Trace every hook call through ``pm.trace`` into ``write``; returns the undo function."""
    pm.trace.root.setwriter(write)
    hooktrace = pm.trace.root.get("hook")

    def before(
        hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, object]
    ) -> None:
        hooktrace.root.indent += 1
        calls = ",".join(_call_order(impls)) or "-"
        hooktrace(hook_name, {"calls": calls, "args": ",".join(kwargs) or "-"})

    def after(
        outcome: pluggy.Result[Any],
        hook_name: str,
        impls: Sequence[pluggy.HookImpl],
        kwargs: Mapping[str, object],
    ) -> None:
        if outcome.exception is not None:
            hooktrace("finish", hook_name, "--> raised", type(outcome.exception).__name__)
        else:
            result = outcome.get_result()
            answers = result if isinstance(result, list) else [result]
            told = "; ".join(map(_describe, answers)) or "no answer"
            hooktrace("finish", hook_name, "-->", told)
        hooktrace.root.indent -= 1

    undo_monitoring = pm.add_hookcall_monitoring(before, after)

    def undo() -> None:
        undo_monitoring()
        pm.trace.root.setwriter(None)

    return undo
