"""SQL lives only in the store modules and the store backends.

Actors, HTTP handlers, admin commands and plugins call named store functions
(docs/architecture.md, "The store seam"). This test reads the source (AST): a
string that holds a SQL statement, or an ``import`` of ``sqlite3``/``aiosqlite``,
outside the allowed modules fails it, naming the module and line.

SQL is allowed in the backends (``promod/store/``) and in each domain's store
modules, ``<domain>/store.py``, ``<domain>/store_*.py`` or a ``<domain>/store/``
package. Only the backends import a driver: domain store modules are written
against :class:`promod.store.seam.Transaction` and serve every backend.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import promod

ROOT = Path(promod.__file__).parent.parent
SOURCES = [ROOT / "promod", *sorted((ROOT / "plugins").glob("*/*"))]

SQL = re.compile(
    r"\b(SELECT\b[\s\S]+\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM"
    r"|CREATE\s+(TEMP\s+|UNIQUE\s+)?(TABLE|INDEX|TRIGGER|VIEW)|BEGIN\s+IMMEDIATE|PRAGMA\s+\w+"
    r"|ON\s+CONFLICT|json_each\s*\()"
)
DRIVERS = {"sqlite3", "aiosqlite", "asyncpg"}


def is_backend(rel: Path) -> bool:
    return rel.parts[:2] == ("promod", "store")


def is_store_module(rel: Path) -> bool:
    parts = rel.parts
    if is_backend(rel):
        return True
    return (
        any(p == "store" for p in parts[:-1])
        or rel.stem == "store"
        or (rel.stem.startswith("store_"))
    )


def sources() -> Iterator[Path]:
    for base in SOURCES:
        if base.is_dir():
            for path in sorted(base.rglob("*.py")):
                rel = path.relative_to(ROOT)
                if "tests" in rel.parts or rel.parts[0] == "tests":
                    continue
                yield path


def _docstrings(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def offences(path: Path, sql_allowed: bool = False) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in DRIVERS:
                    yield f"line {node.lineno}: import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in DRIVERS:
                yield f"line {node.lineno}: from {node.module} import …"
        elif (
            not sql_allowed
            and isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docs
            and SQL.search(node.value)
        ):
            yield f"line {node.lineno}: SQL {node.value.strip()[:50]!r}"


def test_sql_and_drivers_only_in_store_modules() -> None:
    found: dict[str, list[str]] = {}
    for path in sources():
        rel = path.relative_to(ROOT)
        if is_backend(rel):
            continue
        hits = list(offences(path, sql_allowed=is_store_module(rel)))
        if hits:
            found[rel.as_posix()] = hits
    assert not found, "SQL or a driver outside the store seam:\n" + "\n".join(
        f"{m}: {'; '.join(h[:3])}" for m, h in sorted(found.items())
    )


def test_the_detector_sees_sql_and_driver_imports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        'import sqlite3\nQ = "SELECT id FROM campaigns WHERE x = 1"\n'
        'def f():\n    """SELECT in a docstring is prose."""\n'
        '    return f"UPDATE grants SET state = {1}"\n',
        encoding="utf-8",
    )
    assert [o.split(":")[0] for o in offences(bad)] == ["line 1", "line 2", "line 5"]
    assert is_store_module(Path("promod/ledger/store.py"))
    assert is_store_module(Path("promod/ledger/store_grants.py"))
    assert is_store_module(Path("promod/ledger/store/caps.py"))
    assert is_store_module(Path("promod/store/sqlite.py"))
    assert not is_store_module(Path("promod/actors/ledger.py"))
    assert [o.split(":")[0] for o in offences(bad, sql_allowed=True)] == ["line 1"]
