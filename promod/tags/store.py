"""The store of tag rules, of the reason each tag is there, and of tag history.

Every function takes a :class:`promod.store.seam.Transaction` and runs inside the one
transaction of ``Database.run`` (tables of migration 0012)::

    result = await db.run(partial(apply_rules, rules=rules, now=now, by="alice"))
    change = await db.run(partial(check_rule, name="bonus", as_of=now))
    done = await db.run(partial(process_events, as_of=now))
    counts = await db.run(partial(simulate, rules=rules, as_of=now), write=False)

A tag carries its current reason in ``customer_tags`` (``source``: ``rule:NAME@V``,
``operator:USER``, ``api:TOKEN``, ``api``, ``import``;
``rule``: the rule's name when a rule set it; an operator's ``reason``; ``since``),
and every change is a row of ``tag_history``. A ``sync`` rule removes only the tags
it set itself; see docs/tags.md.
The segment SQL comes from :func:`promod.campaigns.segments.compile_segment` and needs
its SQL functions on the connection (the daemon registers them on every one).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from promod.campaigns.segments import compile_segment
from promod.store.seam import Row, Transaction
from promod.tags.rules import TagRule, rule_from_row

__all__ = [
    "Change",
    "StoredRule",
    "TagError",
    "active_rules",
    "add_tag",
    "apply_rules",
    "check_rule",
    "customer_tags",
    "history",
    "list_tags",
    "process_events",
    "remove_tag",
    "replace_customer_tags",
    "rule_source",
    "rule_versions",
    "show_tag",
    "simulate",
    "tag_reasons",
]

EVENT_BATCH = 5000
CASCADE_ROUNDS = 5
HISTORY_LIMIT = 100
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode


class TagError(Exception):
    """A refused tag operation: ``code`` is an admin error code (not_found, invalid_args)."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


@dataclass(frozen=True)
class StoredRule:
    """A rule's current version as stored, with the as-of time of its last full check."""

    rule: TagRule
    version: int
    checked_at: float | None

    @property
    def source(self) -> str:
        return rule_source(self.rule.name, self.version)


@dataclass
class Change:
    """What one evaluation did (or would do): customers tagged and untagged."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "removed": len(self.removed)}


def rule_source(name: str, version: int) -> str:
    """The source word of a rule's changes: ``rule:NAME@VERSION``."""
    return f"rule:{name}@{version}"


# --------------------------------------------------------------------------- rules


def _same(rule: TagRule, row: Row) -> bool:
    return bool(
        row["tag"] == rule.tag
        and row["mode"] == rule.mode
        and row["segment"] == _dumps(rule.segment.to_dict())
        and float(row["recheck"]) == rule.recheck
        and row["description"] == rule.description
    )


_VERSION_COLUMNS = (
    "name",
    "version",
    "tag",
    "mode",
    "segment",
    "events",
    "recheck",
    "description",
    "applied_at",
    "applied_by",
)


def apply_rules(
    tx: Transaction, *, rules: Sequence[TagRule], now: float, by: str
) -> dict[str, Any]:
    """Make ``rules`` the current rule set: new versions of changed rules, retire the rest.

    A rule whose content is unchanged keeps its version (and its last check). Retired
    rules stop being evaluated; the tags they set stay. Answers the names per outcome.
    """
    current = {
        str(row["name"]): row
        for row in tx.fetch_all(
            "SELECT r.name, r.version, v.tag, v.mode, v.segment, v.recheck, v.description"
            " FROM tag_rules AS r LEFT JOIN tag_rule_versions AS v"
            " ON v.name = r.name AND v.version = r.version"
        )
    }
    outcome: dict[str, list[Any]] = {"created": [], "updated": [], "unchanged": [], "retired": []}
    for rule in rules:
        row = current.get(rule.name)
        if row is not None and row["version"] is not None and _same(rule, row):
            outcome["unchanged"].append({"name": rule.name, "version": int(row["version"])})
            continue
        version = (
            int(
                tx.fetch_value(
                    "SELECT coalesce(max(version), 0) FROM tag_rule_versions WHERE name = :name",
                    {"name": rule.name},
                    0,
                )
            )
            + 1
        )
        tx.execute(
            f"INSERT INTO tag_rule_versions ({', '.join(_VERSION_COLUMNS)})"
            f" VALUES ({', '.join(':' + c for c in _VERSION_COLUMNS)})",
            {
                "name": rule.name,
                "version": version,
                "tag": rule.tag,
                "mode": rule.mode,
                "segment": _dumps(rule.segment.to_dict()),
                "events": _dumps(sorted(rule.events)),
                "recheck": rule.recheck,
                "description": rule.description,
                "applied_at": now,
                "applied_by": by,
            },
        )
        tx.execute(
            tx.dialect.upsert(
                "tag_rules",
                ("name", "version", "checked_at"),
                ("name",),
                {"version": "excluded.version", "checked_at": "NULL"},
            ),
            {"name": rule.name, "version": version, "checked_at": None},
        )
        kind = "created" if row is None or row["version"] is None else "updated"
        outcome[kind].append({"name": rule.name, "version": version})
    wanted = {rule.name for rule in rules}
    for name, row in sorted(current.items()):
        if name not in wanted and row["version"] is not None:
            tx.execute("UPDATE tag_rules SET version = NULL WHERE name = :name", {"name": name})
            outcome["retired"].append({"name": name, "version": int(row["version"])})
    return outcome


def active_rules(tx: Transaction) -> list[StoredRule]:
    """Every current (not retired) rule, by name."""
    rows = tx.fetch_all(
        "SELECT v.*, r.checked_at FROM tag_rules AS r JOIN tag_rule_versions AS v"
        " ON v.name = r.name AND v.version = r.version ORDER BY r.name"
    )
    return [
        StoredRule(
            rule=rule_from_row(row),
            version=int(row["version"]),
            checked_at=None if row["checked_at"] is None else float(row["checked_at"]),
        )
        for row in rows
    ]


def rule_versions(tx: Transaction, *, name: str) -> list[dict[str, Any]]:
    """Every version of rule ``name``, oldest first (``current`` marks the one in force)."""
    current = tx.fetch_value("SELECT version FROM tag_rules WHERE name = :name", {"name": name})
    rows = tx.fetch_all(
        "SELECT * FROM tag_rule_versions WHERE name = :name ORDER BY version", {"name": name}
    )
    return [
        {
            "version": int(row["version"]),
            "current": row["version"] == current,
            "rule": rule_from_row(row).to_dict(),
            "applied_at": float(row["applied_at"]),
            "applied_by": row["applied_by"],
        }
        for row in rows
    ]


# --------------------------------------------------------------------------- evaluation


def _matching(
    tx: Transaction, rule: TagRule, as_of: float, customers: Collection[str] | None
) -> set[str]:
    only = None if customers is None else sorted(customers)
    sql, params = compile_segment(rule.segment, as_of=int(as_of), only=only)
    return {str(row[0]) for row in tx.iterate(sql, params)}


def _tagged(tx: Transaction, tag: str, customers: Collection[str] | None) -> dict[str, str | None]:
    """Customers carrying ``tag`` (of ``customers`` when given) -> the rule that set it."""
    sql = "SELECT customer_id, rule FROM customer_tags WHERE tag = :tag"
    params: dict[str, Any] = {"tag": tag}
    if customers is not None:
        sql += " AND " + tx.dialect.in_array("customer_id", "ids")
        params["ids"] = tx.dialect.array(sorted(customers))
    return {str(row[0]): row[1] for row in tx.iterate(sql, params)}


def _plan(
    tx: Transaction,
    rule: TagRule,
    as_of: float,
    customers: Collection[str] | None,
    matching: set[str] | None = None,
) -> Change:
    if matching is None:
        matching = _matching(tx, rule, as_of, customers)
    tagged = _tagged(tx, rule.tag, customers)
    added = sorted(matching - tagged.keys())
    removed: list[str] = []
    if rule.mode == "sync":
        removed = sorted(
            c for c, owner in tagged.items() if owner == rule.name and c not in matching
        )
    return Change(added=added, removed=removed)


def _write(tx: Transaction, rule: StoredRule, change: Change, now: float) -> None:
    source = rule.source
    tag = rule.rule.tag
    if change.added:
        tx.executemany(
            tx.dialect.insert_ignore(
                "customer_tags",
                ("tag", "customer_id", "source", "rule", "reason", "since"),
                ("tag", "customer_id"),
            ),
            [
                {
                    "tag": tag,
                    "customer_id": c,
                    "source": source,
                    "rule": rule.rule.name,
                    "reason": None,
                    "since": now,
                }
                for c in change.added
            ],
        )
    if change.removed:
        tx.executemany(
            "DELETE FROM customer_tags WHERE tag = :tag AND customer_id = :customer_id",
            [{"tag": tag, "customer_id": c} for c in change.removed],
        )
    _record(
        tx,
        [(c, tag, "added") for c in change.added] + [(c, tag, "removed") for c in change.removed],
        source=source,
        reason=None,
        now=now,
    )


def _record(
    tx: Transaction,
    changes: Iterable[tuple[str, str, str]],
    *,
    source: str,
    reason: str | None,
    now: float,
) -> None:
    rows = [
        {"customer_id": c, "tag": t, "change": ch, "source": source, "reason": reason, "at": now}
        for c, t, ch in changes
    ]
    if rows:
        tx.executemany(
            "INSERT INTO tag_history (customer_id, tag, change, source, reason, at)"
            " VALUES (:customer_id, :tag, :change, :source, :reason, :at)",
            rows,
        )


def check_rule(tx: Transaction, *, name: str, as_of: float) -> Change | None:
    """Evaluate rule ``name`` over every customer at ``as_of`` and apply the result.

    Marks the rule checked at ``as_of``. None when the rule is not (or no longer) current.
    """
    stored = next((r for r in active_rules(tx) if r.rule.name == name), None)
    if stored is None:
        return None
    change = _plan(tx, stored.rule, as_of, None)
    _write(tx, stored, change, as_of)
    tx.execute(
        "UPDATE tag_rules SET checked_at = :at WHERE name = :name", {"at": as_of, "name": name}
    )
    return change


def process_events(tx: Transaction, *, as_of: float, limit: int = EVENT_BATCH) -> dict[str, Any]:
    """Evaluate, for the customers of the events stored since the last call, the rules
    that read those events' names, and move the cursor past them.

    Only rules whose segment has an event condition on one of the new events' names are
    evaluated, and only for those events' customers; then the rules that read a tag
    those evaluations changed, for the customers whose tag changed (up to
    ``CASCADE_ROUNDS`` times). Without event rules the cursor just moves to the newest
    event. ``more`` is true when ``limit`` events were read (call again).
    """
    cursor = tx.fetch_value("SELECT seq FROM tag_cursor WHERE id = 1", (), None)
    active = active_rules(tx)
    rules = [r for r in active if r.rule.events]
    if cursor is None or not rules:
        top = int(tx.fetch_value("SELECT coalesce(max(seq), 0) FROM events", (), 0))
        if cursor is None or top != int(cursor):
            _move_cursor(tx, top)
        return {"events": 0, "more": False, "added": 0, "removed": 0, "rules": {}}
    rows = tx.fetch_all(
        "SELECT seq, customer_id, name FROM events WHERE seq > :seq ORDER BY seq LIMIT :limit",
        {"seq": int(cursor), "limit": limit},
    )
    if not rows:
        return {"events": 0, "more": False, "added": 0, "removed": 0, "rules": {}}
    by_name: dict[str, set[str]] = {}
    for row in rows:
        by_name.setdefault(str(row["name"]), set()).add(str(row["customer_id"]))
    done: dict[str, dict[str, int]] = {}
    changed: dict[str, set[str]] = {}  # tag -> customers whose tag a rule just changed

    def evaluate(stored: StoredRule, customers: set[str]) -> None:
        change = _plan(tx, stored.rule, as_of, customers)
        _write(tx, stored, change, as_of)
        if change.added or change.removed:
            counts = done.setdefault(stored.rule.name, {"added": 0, "removed": 0})
            counts["added"] += len(change.added)
            counts["removed"] += len(change.removed)
            changed.setdefault(stored.rule.tag, set()).update(change.added, change.removed)

    for stored in rules:
        customers: set[str] = set()
        for event in stored.rule.events:
            customers |= by_name.get(event, set())
        if customers:
            evaluate(stored, customers)
    for _ in range(CASCADE_ROUNDS):
        if not changed:
            break
        wave, changed = changed, {}
        for stored in active:
            customers = set()
            for tag in stored.rule.reads_tags:
                customers |= wave.get(tag, set())
            if customers:
                evaluate(stored, customers)
    _move_cursor(tx, int(rows[-1]["seq"]))
    return {
        "events": len(rows),
        "more": len(rows) >= limit,
        "added": sum(c["added"] for c in done.values()),
        "removed": sum(c["removed"] for c in done.values()),
        "rules": done,
    }


def _move_cursor(tx: Transaction, seq: int) -> None:
    tx.execute(
        tx.dialect.upsert("tag_cursor", ("id", "seq"), ("id",), {"seq": "excluded.seq"}),
        {"id": 1, "seq": seq},
    )


def simulate(tx: Transaction, *, rules: Sequence[TagRule], as_of: float) -> list[dict[str, Any]]:
    """Per rule: how many customers it selects, would tag and would untag now (no writes)."""
    out = []
    for rule in rules:
        matching = _matching(tx, rule, as_of, None)
        change = _plan(tx, rule, as_of, None, matching)
        out.append(
            {
                "name": rule.name,
                "tag": rule.tag,
                "mode": rule.mode,
                "matching": len(matching),
                "would_add": len(change.added),
                "would_remove": len(change.removed),
                "examples_add": change.added[:10],
                "examples_remove": change.removed[:10],
            }
        )
    return out


# --------------------------------------------------------------------------- manual edits


def _known_customer(tx: Transaction, customer_id: str) -> None:
    if tx.fetch_one("SELECT 1 FROM customers WHERE id = :id", {"id": customer_id}) is None:
        raise TagError("not_found", f"no customer {customer_id!r}", {"customer": customer_id})


def add_tag(
    tx: Transaction,
    *,
    customer_id: str,
    tag: str,
    source: str,
    reason: str | None,
    now: float,
) -> bool:
    """Tag a customer by hand (``source``: ``operator:USER`` or ``api:TOKEN``).

    False when the customer already carries the tag (its reason is kept).
    """
    _known_customer(tx, customer_id)
    added = tx.execute(
        tx.dialect.insert_ignore(
            "customer_tags",
            ("tag", "customer_id", "source", "rule", "reason", "since"),
            ("tag", "customer_id"),
        ),
        {
            "tag": tag,
            "customer_id": customer_id,
            "source": source,
            "rule": None,
            "reason": reason,
            "since": now,
        },
    )
    if added:
        _record(tx, [(customer_id, tag, "added")], source=source, reason=reason, now=now)
    return bool(added)


def remove_tag(
    tx: Transaction,
    *,
    customer_id: str,
    tag: str,
    source: str,
    reason: str | None,
    now: float,
) -> bool:
    """Untag a customer by hand; False when the customer did not carry the tag."""
    _known_customer(tx, customer_id)
    removed = tx.execute(
        "DELETE FROM customer_tags WHERE tag = :tag AND customer_id = :customer_id",
        {"tag": tag, "customer_id": customer_id},
    )
    if removed:
        _record(tx, [(customer_id, tag, "removed")], source=source, reason=reason, now=now)
    return bool(removed)


def replace_customer_tags(
    tx: Transaction, *, tags: Mapping[str, Sequence[str]], source: str, now: float
) -> None:
    """Give each customer of ``tags`` exactly the tags listed (a profile write or import).

    Tags that stay keep their reason; new ones get ``source``; each change is history.
    """
    if not tags:
        return
    current: dict[str, set[str]] = {cid: set() for cid in tags}
    for row in tx.iterate(
        "SELECT customer_id, tag FROM customer_tags WHERE "
        + tx.dialect.in_array("customer_id", "ids"),
        {"ids": tx.dialect.array(list(tags))},
    ):
        current[str(row[0])].add(str(row[1]))
    added = [(cid, t) for cid, wanted in tags.items() for t in wanted if t not in current[cid]]
    removed = [(cid, t) for cid, wanted in tags.items() for t in sorted(current[cid] - set(wanted))]
    if removed:
        tx.executemany(
            "DELETE FROM customer_tags WHERE tag = :tag AND customer_id = :customer_id",
            [{"tag": t, "customer_id": cid} for cid, t in removed],
        )
    if added:
        tx.executemany(
            tx.dialect.insert_ignore(
                "customer_tags",
                ("tag", "customer_id", "source", "rule", "reason", "since"),
                ("tag", "customer_id"),
            ),
            [
                {
                    "tag": t,
                    "customer_id": cid,
                    "source": source,
                    "rule": None,
                    "reason": None,
                    "since": now,
                }
                for cid, t in added
            ],
        )
    _record(
        tx,
        [(cid, t, "added") for cid, t in added] + [(cid, t, "removed") for cid, t in removed],
        source=source,
        reason=None,
        now=now,
    )


# --------------------------------------------------------------------------- reading


def tag_reasons(tx: Transaction, *, customer_id: str) -> list[dict[str, Any]]:
    """Each tag of a customer with why it is there: source, rule, reason, since."""
    return [
        {
            "tag": row["tag"],
            "source": row["source"],
            "rule": row["rule"],
            "reason": row["reason"],
            "since": row["since"],
        }
        for row in tx.fetch_all(
            "SELECT tag, source, rule, reason, since FROM customer_tags"
            " WHERE customer_id = :id ORDER BY tag",
            {"id": customer_id},
        )
    ]


def customer_tags(tx: Transaction, *, customer_id: str) -> list[dict[str, Any]] | None:
    """:func:`tag_reasons` of a known customer; None when there is no such customer."""
    if tx.fetch_one("SELECT 1 FROM customers WHERE id = :id", {"id": customer_id}) is None:
        return None
    return tag_reasons(tx, customer_id=customer_id)


def list_tags(tx: Transaction) -> list[dict[str, Any]]:
    """Every tag in use or maintained by a rule: customers carrying it, its rule."""
    counts = {
        str(row[0]): int(row[1])
        for row in tx.fetch_all("SELECT tag, count(*) FROM customer_tags GROUP BY tag")
    }
    owners = {r.rule.tag: r for r in active_rules(tx)}
    out = []
    for tag in sorted(counts.keys() | owners.keys()):
        owner = owners.get(tag)
        out.append(
            {
                "tag": tag,
                "customers": counts.get(tag, 0),
                "rule": owner.rule.name if owner else None,
                "version": owner.version if owner else None,
                "mode": owner.rule.mode if owner else None,
                "checked_at": owner.checked_at if owner else None,
            }
        )
    return out


def show_tag(tx: Transaction, *, tag: str) -> dict[str, Any]:
    """One tag: customers carrying it by source, its rule (every version), latest changes."""
    by_source = {
        str(row[0] if row[0] is not None else "(unknown)"): int(row[1])
        for row in tx.fetch_all(
            "SELECT source, count(*) FROM customer_tags WHERE tag = :tag"
            " GROUP BY source ORDER BY source",
            {"tag": tag},
        )
    }
    owner = next((r for r in active_rules(tx) if r.rule.tag == tag), None)
    recent = history(tx, tag=tag, limit=20)
    if not by_source and owner is None and not recent:
        raise TagError("not_found", f"no tag {tag!r}", {"tag": tag})
    return {
        "tag": tag,
        "customers": sum(by_source.values()),
        "by_source": by_source,
        "rule": None
        if owner is None
        else {
            "name": owner.rule.name,
            "version": owner.version,
            "checked_at": owner.checked_at,
            **owner.rule.to_dict(),
            "versions": len(rule_versions(tx, name=owner.rule.name)),
        },
        "recent": recent,
    }


def history(
    tx: Transaction,
    *,
    customer_id: str | None = None,
    tag: str | None = None,
    limit: int = HISTORY_LIMIT,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """Tag changes, newest first, of one customer and/or one tag (``before``: an id, to page)."""
    where = []
    params: dict[str, Any] = {"limit": limit}
    if customer_id is not None:
        where.append("customer_id = :customer_id")
        params["customer_id"] = customer_id
    if tag is not None:
        where.append("tag = :tag")
        params["tag"] = tag
    if before is not None:
        where.append("id < :before")
        params["before"] = before
    sql = "SELECT id, customer_id, tag, change, source, reason, at FROM tag_history"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT :limit"
    return [
        {
            "id": int(row["id"]),
            "customer_id": row["customer_id"],
            "tag": row["tag"],
            "change": row["change"],
            "source": row["source"],
            "reason": row["reason"],
            "at": float(row["at"]),
        }
        for row in tx.fetch_all(sql, params)
    ]
