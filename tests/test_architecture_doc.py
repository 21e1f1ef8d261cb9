"""docs/architecture.md stays true: it names every actor, message, built-in plugin and
migration, and nothing in the code cites a design document outside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from promod.daemon import ACTORS
from promod.plugins.host import DEFAULT_PLUGINS
from promod.store.database import migrations

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
SOURCES = ("promod", "plugins", "docs", "README.md")
OUTSIDE_CITATION = re.compile(r"DESIGN\s*§")


def _text_files() -> list[Path]:
    files: list[Path] = []
    for name in SOURCES:
        path = ROOT / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        for file in candidates:
            if file.is_file() and "egg-info" not in str(file) and "__pycache__" not in file.parts:
                files.append(file)
    return files


def _messages() -> set[str]:
    """Every message class of the actors: the frozen dataclasses in promod/actors/."""
    found = set()
    for module in (ROOT / "promod" / "actors").glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            for deco in node.decorator_list:
                if (
                    isinstance(deco, ast.Call)
                    and getattr(deco.func, "id", None) == "dataclass"
                    and any(
                        k.arg == "frozen" and getattr(k.value, "value", False)
                        for k in deco.keywords
                    )
                ):
                    found.add(node.name)
    return found


def test_nothing_cites_a_design_document_outside_the_repository() -> None:
    cited = [
        f"{file.relative_to(ROOT)}:{n}: {line.strip()}"
        for file in _text_files()
        for n, line in enumerate(file.read_text(errors="replace").splitlines(), start=1)
        if OUTSIDE_CITATION.search(line)
    ]
    assert cited == [], (
        "cite docs/architecture.md (or another doc in docs/) instead:\n" + "\n".join(cited)
    )


def test_architecture_names_every_actor_message_plugin_and_migration() -> None:
    text = DOC.read_text()
    table = text[text.index("| actor | module | owns |") :]
    rows = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")}
    assert {name for name, _ in ACTORS} <= rows
    messages = _messages()
    assert {"Inspect", "Settle", "ProcessDue", "Kick", "RunsChanged", "Wake"} <= messages
    assert {m for m in messages if f"`{m}`" not in text} == set()
    assert {p for p in DEFAULT_PLUGINS if f"`{p}`" not in text} == set()
    assert {m.label for m in migrations() if f"`{m.label}`" not in text} == set()


def test_readme_links_the_architecture() -> None:
    assert "docs/architecture.md" in (ROOT / "README.md").read_text()
