"""The docs stay true: every plugin hook has its section in docs/plugins.md."""

from __future__ import annotations

import re
from pathlib import Path

import pluggy

from promod.plugins import hookspecs

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
HEADING = re.compile(r"^### (promod_\w+)\(([^)]*)\)\s*$", re.MULTILINE)


def _hooks() -> dict[str, list[str]]:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    out = {}
    for name in dir(pm.hook):
        caller = getattr(pm.hook, name)
        if name.startswith("promod_") and caller.spec is not None:
            out[name] = list(caller.spec.argnames)
    return out


def _documented() -> dict[str, list[str]]:
    text = GUIDE.read_text()
    return {
        m.group(1): [a.strip() for a in m.group(2).split(",") if a.strip()]
        for m in HEADING.finditer(text)
    }


def test_plugin_hooks_are_documented() -> None:
    hooks = _hooks()
    documented = _documented()
    assert hooks, "no hookspecs found"
    missing = {
        name: f"### {name}({', '.join(args)})"
        for name, args in hooks.items()
        if documented.get(name) != args
    }
    assert not missing, f"docs/plugins.md needs these hook sections: {sorted(missing.values())}"
    stale = sorted(set(documented) - set(hooks))
    assert not stale, f"docs/plugins.md documents hooks that do not exist: {stale}"


def test_hook_sections_are_not_empty() -> None:
    text = GUIDE.read_text()
    for match in HEADING.finditer(text):
        following = text[match.end() :].split("\n### ", 1)[0].split("\n## ", 1)[0]
        assert "```python" in following, f"{match.group(1)} has no example"
