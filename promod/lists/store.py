"""Versioned custom lists in the database: stage a version, apply it atomically, add, delete.

A list's members are those of its *current* version; what segments and
``custom_list`` campaigns read is the view ``custom_lists (name, customer_id)``. A
change is written as a new *staging* version, in as many transactions as it takes
(a streamed import, later a CRM refresh), invisible to readers, then applied by one
transaction: ``replace`` makes it the current version and retires the old one,
``add`` merges its members into the current version. A writer that fails or is
killed half way leaves only a staging version, discarded later; never half a list.
Every function takes the caller's :class:`~promod.store.seam.Transaction` (a write
transaction of ``Database.run``) and never commits::

    staged = begin_version(tx, "vip-2026", source="import", now=now)
    stage_members(tx, staged, ["c1", "c2"])
    summary = apply_version(tx, staged, mode="replace", now=now)
    # {"list": "vip-2026", "version": 1, "members": 2, "added": 2, "removed": 0,
    #  "without_profile": 1, "without_profile_ids": ["c2"], ...}

A member need not have a customer profile; such members are kept, targeted, and
reported (``without_profile``) by every change and by :func:`show_list`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from promod.customers.records import MAX_ID_LENGTH
from promod.store.seam import Transaction, TxLike, as_tx

__all__ = [
    "LIST_NAME",
    "MODES",
    "SAMPLE",
    "ListError",
    "Mode",
    "StagedVersion",
    "apply_version",
    "begin_version",
    "check_member",
    "check_name",
    "delete_list",
    "discard_version",
    "list_exists",
    "list_lists",
    "set_members",
    "show_list",
    "stage_members",
]

LIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MODES = ("replace", "add")
SAMPLE = 20  # member ids shown by show_list and reported without a profile
KEEP_VERSIONS = 10  # retired versions whose counts stay in the history

Mode: TypeAlias = Literal["replace", "add"]

_MEMBER = ("list_id", "version", "customer_id")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ListError(Exception):
    """A refused list operation; ``code`` is an admin/HTTP error code."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


@dataclass(frozen=True)
class StagedVersion:
    """A version being written: invisible until applied."""

    list_id: int
    name: str
    version: int


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not LIST_NAME.fullmatch(name):
        raise ListError(
            "invalid_args",
            f"list name {name!r}: 1 to 128 letters, digits and _ . - (starting with a"
            " letter or digit)",
            {"field": "name"},
        )
    return name


def check_member(value: Any) -> str:
    """A customer id as the customer records define it; ValueError with the reason."""
    if not isinstance(value, str):
        raise ValueError(f"id must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError("id must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"id longer than {MAX_ID_LENGTH} characters")
    if value != value.strip():
        raise ValueError("id has leading or trailing whitespace")
    if _CONTROL.search(value):
        raise ValueError("id contains control characters")
    return value


def _list_row(tx: TxLike, name: str) -> Any:
    tx = as_tx(tx)
    return tx.fetch_one(
        "SELECT id, name, version, source, created_at, updated_at FROM lists WHERE name = ?",
        (name,),
    )


def list_exists(tx: TxLike, name: str) -> bool:
    """Whether list ``name`` has been applied at least once."""
    return (
        as_tx(tx).fetch_one(
            "SELECT 1 FROM lists WHERE name = :name AND version IS NOT NULL", {"name": name}
        )
        is not None
    )


def begin_version(tx: TxLike, name: str, *, source: str, now: float) -> StagedVersion:
    """A new staging version of list ``name`` (the list is created, empty, if new)."""
    tx = as_tx(tx)
    check_name(name)
    row = _list_row(tx, name)
    if row is None:
        list_id = int(
            tx.fetch_value(
                "INSERT INTO lists (name, version, source, created_at, updated_at)"
                " VALUES (?, NULL, ?, ?, ?) RETURNING id",
                (name, source, now, now),
            )
        )
    else:
        list_id = int(row[0])
    version = int(
        tx.fetch_value(
            "SELECT coalesce(max(version), 0) + 1 FROM list_versions WHERE list_id = ?",
            (list_id,),
        )
    )
    tx.execute(
        "INSERT INTO list_versions (list_id, version, state, source, created_at)"
        " VALUES (?, ?, 'staging', ?, ?)",
        (list_id, version, source, now),
    )
    return StagedVersion(list_id=list_id, name=name, version=version)


def stage_members(tx: TxLike, staged: StagedVersion, ids: Iterable[str]) -> None:
    """Add ids (already checked) to a staging version; repeats are kept once."""
    tx = as_tx(tx)
    tx.executemany(
        tx.dialect.insert_ignore("list_members", _MEMBER, _MEMBER),
        ({"list_id": staged.list_id, "version": staged.version, "customer_id": cid} for cid in ids),
    )


def _require_staging(tx: TxLike, staged: StagedVersion) -> None:
    tx = as_tx(tx)
    row = tx.fetch_one(
        "SELECT state FROM list_versions WHERE list_id = ? AND version = ?",
        (staged.list_id, staged.version),
    )
    if row is None or row[0] != "staging":
        raise ListError(
            "conflict",
            f"version {staged.version} of list {staged.name!r} is no longer being written",
        )


def _count(tx: TxLike, sql: str, params: Sequence[Any]) -> int:
    tx = as_tx(tx)
    return int(tx.fetch_value(sql, params))


def _without_profile(tx: TxLike, list_id: int, version: int) -> tuple[int, list[str]]:
    tx = as_tx(tx)
    where = (
        " FROM list_members m WHERE m.list_id = ? AND m.version = ?"
        " AND NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = m.customer_id)"
    )
    count = _count(tx, "SELECT count(*)" + where, (list_id, version))
    sample = [
        str(r[0])
        for r in tx.fetch_all(
            "SELECT m.customer_id" + where + " ORDER BY m.customer_id LIMIT ?",
            (list_id, version, SAMPLE),
        )
    ]
    return count, sample


def discard_version(tx: TxLike, list_id: int, version: int) -> None:
    """Drop a staging version and its members (a failed or abandoned write)."""
    tx = as_tx(tx)
    tx.execute("DELETE FROM list_members WHERE list_id = ? AND version = ?", (list_id, version))
    tx.execute(
        "UPDATE list_versions SET state = 'discarded' WHERE list_id = ? AND version = ?"
        " AND state = 'staging'",
        (list_id, version),
    )
    # A list created for this write and never applied goes with it.
    tx.execute(
        "DELETE FROM lists WHERE id = ? AND version IS NULL AND NOT EXISTS"
        " (SELECT 1 FROM list_versions WHERE list_id = ? AND state = 'staging')",
        (list_id, list_id),
    )


def apply_version(tx: TxLike, staged: StagedVersion, *, mode: Mode, now: float) -> dict[str, Any]:
    """Make a staging version visible: ``replace`` the list by it, or ``add`` its members."""
    tx = as_tx(tx)
    if mode not in MODES:
        raise ListError("invalid_args", f"mode must be replace or add, not {mode!r}")
    _require_staging(tx, staged)
    list_id, version = staged.list_id, staged.version
    row = tx.fetch_one("SELECT version FROM lists WHERE id = ?", (list_id,))
    current = None if row is None or row[0] is None else int(row[0])
    given = _count(
        tx,
        "SELECT count(*) FROM list_members WHERE list_id = ? AND version = ?",
        (list_id, version),
    )
    without_count, without_ids = _without_profile(tx, list_id, version)
    source = str(
        tx.fetch_value(
            "SELECT source FROM list_versions WHERE list_id = ? AND version = ?",
            (list_id, version),
        )
    )
    if mode == "add" and current is not None:
        added = tx.execute(
            "INSERT INTO list_members (list_id, version, customer_id)"
            " SELECT list_id, ?, customer_id FROM list_members"
            " WHERE list_id = ? AND version = ?"
            " ON CONFLICT (list_id, version, customer_id) DO NOTHING",
            (current, list_id, version),
        )
        removed = 0
        discard_version(tx, list_id, version)
        members = _count(
            tx,
            "SELECT count(*) FROM list_members WHERE list_id = ? AND version = ?",
            (list_id, current),
        )
        tx.execute(
            "UPDATE list_versions SET members = ? WHERE list_id = ? AND version = ?",
            (members, list_id, current),
        )
        applied = current
    else:
        if current is None:
            added, removed = given, 0
        else:
            added = _count(
                tx,
                "SELECT count(*) FROM list_members n WHERE n.list_id = ? AND n.version = ?"
                " AND NOT EXISTS (SELECT 1 FROM list_members o WHERE o.list_id = n.list_id"
                " AND o.version = ? AND o.customer_id = n.customer_id)",
                (list_id, version, current),
            )
            removed = _count(
                tx,
                "SELECT count(*) FROM list_members o WHERE o.list_id = ? AND o.version = ?"
                " AND NOT EXISTS (SELECT 1 FROM list_members n WHERE n.list_id = o.list_id"
                " AND n.version = ? AND n.customer_id = o.customer_id)",
                (list_id, current, version),
            )
            tx.execute(
                "UPDATE list_versions SET state = 'retired' WHERE list_id = ? AND version = ?",
                (list_id, current),
            )
            tx.execute(
                "DELETE FROM list_members WHERE list_id = ? AND version = ?", (list_id, current)
            )
        tx.execute(
            "UPDATE list_versions SET state = 'current', members = ?, added = ?, removed = ?,"
            " applied_at = ? WHERE list_id = ? AND version = ?",
            (given, added, removed, now, list_id, version),
        )
        members = given
        applied = version
    tx.execute(
        "UPDATE lists SET version = ?, source = ?, updated_at = ? WHERE id = ?",
        (applied, source, now, list_id),
    )
    _prune_history(tx, list_id)
    return {
        "list": staged.name,
        "version": applied,
        "mode": mode,
        "given": given,
        "members": members,
        "added": added,
        "removed": removed,
        "without_profile": without_count,
        "without_profile_ids": without_ids,
    }


def _prune_history(tx: TxLike, list_id: int) -> None:
    tx = as_tx(tx)
    tx.execute(
        "DELETE FROM list_versions WHERE list_id = ? AND state IN ('retired', 'discarded')"
        " AND version NOT IN (SELECT version FROM list_versions WHERE list_id = ?"
        " AND state IN ('retired', 'discarded') ORDER BY version DESC LIMIT ?)",
        (list_id, list_id, KEEP_VERSIONS),
    )


def set_members(
    tx: TxLike,
    name: str,
    ids: Sequence[str],
    *,
    mode: Mode,
    source: str,
    now: float,
) -> dict[str, Any]:
    """Replace list ``name`` by ``ids``, or add them, in the caller's one transaction."""
    tx = as_tx(tx)
    staged = begin_version(tx, name, source=source, now=now)
    stage_members(tx, staged, ids)
    return apply_version(tx, staged, mode=mode, now=now)


def _names_list(node: Any, name: str) -> bool:
    """Whether a segment (JSON) tests list ``name`` anywhere in it."""
    if isinstance(node, dict):
        return node.get("list") == name or any(_names_list(v, name) for v in node.values())
    if isinstance(node, list):
        return any(_names_list(v, name) for v in node)
    return False


def _used_by(tx: Transaction, name: str) -> list[str]:
    """Campaigns not yet final that target the list or test it in their segment."""
    used = []
    for row in tx.fetch_all(
        "SELECT id, spec FROM campaigns WHERE state NOT IN ('completed', 'stopped') ORDER BY id"
    ):
        spec = json.loads(row[1])
        if spec.get("list") == name or _names_list(spec.get("segment"), name):
            used.append(str(row[0]))
    return used


def delete_list(tx: TxLike, name: str, *, force: bool = False) -> dict[str, Any]:
    """Delete a list and every version; refused while a live campaign uses it, unless forced."""
    tx = as_tx(tx)
    check_name(name)
    row = _list_row(tx, name)
    if row is None:
        raise ListError("not_found", f"no list {name!r}")
    used_by = _used_by(tx, name)
    if used_by and not force:
        raise ListError(
            "conflict",
            f"list {name!r} is used by campaign(s) {', '.join(used_by)}; stop them first"
            " or delete with force",
            {"used_by": used_by},
        )
    list_id = int(row[0])
    members = _count(
        tx,
        "SELECT count(*) FROM list_members WHERE list_id = ? AND version = ?",
        (list_id, row[2] if row[2] is not None else -1),
    )
    tx.execute("DELETE FROM list_members WHERE list_id = ?", (list_id,))
    tx.execute("DELETE FROM list_imports WHERE list_id = ?", (list_id,))
    tx.execute("DELETE FROM list_versions WHERE list_id = ?", (list_id,))
    tx.execute("DELETE FROM lists WHERE id = ?", (list_id,))
    return {"list": name, "deleted": True, "members": members, "used_by": used_by}


def list_lists(tx: TxLike) -> list[dict[str, Any]]:
    """Every list that has been applied at least once, by name."""
    tx = as_tx(tx)
    rows = tx.fetch_all(
        "SELECT l.name, l.version, v.members, l.source, l.updated_at FROM lists l"
        " JOIN list_versions v ON v.list_id = l.id AND v.version = l.version"
        " ORDER BY l.name"
    )
    return [
        {
            "list": r[0],
            "version": int(r[1]),
            "members": int(r[2]),
            "source": r[3],
            "updated_at": float(r[4]),
        }
        for r in rows
    ]


def show_list(tx: TxLike, name: str, *, sample: int = SAMPLE) -> dict[str, Any]:
    """One list: counts, members without a profile, a sample of ids, recent versions, users."""
    tx = as_tx(tx)
    check_name(name)
    row = _list_row(tx, name)
    if row is None or row[2] is None:
        raise ListError("not_found", f"no list {name!r}")
    list_id, version = int(row[0]), int(row[2])
    members = _count(
        tx,
        "SELECT count(*) FROM list_members WHERE list_id = ? AND version = ?",
        (list_id, version),
    )
    without_count, without_ids = _without_profile(tx, list_id, version)
    ids = [
        str(r[0])
        for r in tx.fetch_all(
            "SELECT customer_id FROM list_members WHERE list_id = ? AND version = ?"
            " ORDER BY customer_id LIMIT ?",
            (list_id, version, sample),
        )
    ]
    history = [
        {
            "version": int(v[0]),
            "state": v[1],
            "source": v[2],
            "members": int(v[3]),
            "added": v[4],
            "removed": v[5],
            "applied_at": v[6],
        }
        for v in tx.fetch_all(
            "SELECT version, state, source, members, added, removed, applied_at"
            " FROM list_versions WHERE list_id = ? AND state IN ('current', 'retired')"
            " ORDER BY version DESC LIMIT ?",
            (list_id, KEEP_VERSIONS),
        )
    ]
    return {
        "list": name,
        "version": version,
        "members": members,
        "source": row[3],
        "created_at": float(row[4]),
        "updated_at": float(row[5]),
        "without_profile": without_count,
        "without_profile_ids": without_ids,
        "sample": ids,
        "versions": history,
        "used_by": _used_by(tx, name),
    }
