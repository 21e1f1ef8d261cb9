"""Tag rules: the rules file of ``promodctl tags apply``, validated into :class:`TagRule`.

A rules file (TOML or JSON) holds one table per rule under ``rules``; each names the
tag it maintains, its mode and a segment in the segment language (docs/segments.md)::

    [rules.bonus_interest]
    tag = "bonus_interest"
    mode = "sync"          # add while it holds, remove when it stops (default); or "add"
    recheck = "1h"         # evaluate over every customer this often (default "1h")
    segment = { event = "page_view", within = "30d", where = { page = { eq = "/bonus" } } }

    rules = load_rules(text, "toml")       # raises RulesError listing every problem

Every problem is reported at once with its key path (``rules.x.segment.all[1].within``);
unknown keys are errors. The rules and their evaluation are described in docs/tags.md.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo

from promod.campaigns.segments import (
    AllRule,
    AnyRule,
    EventRule,
    NotRule,
    Rule,
    Segment,
    SegmentError,
    parse_segment,
)
from promod.campaigns.segments import (
    TagRule as TagCondition,
)
from promod.customers.records import Name as TagName
from promod.schema import SPEC_WORDS, Duration, Model, Name, Problems, choice, issues_of
from promod.surrogates import SURROGATE_MESSAGE, find_surrogate
from promod.units import format_duration

__all__ = [
    "DEFAULT_RECHECK",
    "MODES",
    "RulesError",
    "TagRule",
    "event_names",
    "load_rules",
    "parse_rules",
    "tag_names",
]

MODES = ("sync", "add")
DEFAULT_RECHECK = 3600.0
MIN_RECHECK = 1.0
MAX_RULES = 1000


class RulesError(ValueError):
    """A rules file with problems; ``issues`` lists every one as (key path, message)."""

    def __init__(self, issues: Sequence[tuple[str, str]]) -> None:
        self.issues: list[tuple[str, str]] = list(issues)
        super().__init__("\n".join(f"{path}: {message}" for path, message in self.issues))

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"path": path, "message": message} for path, message in self.issues]


@dataclass(frozen=True)
class TagRule:
    """One validated rule: the tag it maintains, how, and the segment that decides."""

    name: str
    tag: str
    mode: Literal["sync", "add"]
    segment: Segment
    recheck: float = DEFAULT_RECHECK
    description: str | None = None

    @property
    def events(self) -> frozenset[str]:
        """The event names the segment reads: a new event of one may change the answer."""
        return event_names(self.segment.rule)

    @property
    def reads_tags(self) -> frozenset[str]:
        """The tags the segment reads: another rule's change of one may change the answer."""
        return tag_names(self.segment.rule)

    def to_dict(self) -> dict[str, Any]:
        """The rule as written in a rules file (it parses back to an equal rule)."""
        out: dict[str, Any] = {"tag": self.tag, "mode": self.mode}
        out["recheck"] = format_duration(self.recheck)
        if self.description is not None:
            out["description"] = self.description
        out["segment"] = self.segment.to_dict()
        return out


def event_names(rule: Rule) -> frozenset[str]:
    """Every event name an event condition of ``rule`` reads, at any depth."""
    if isinstance(rule, EventRule):
        return frozenset((rule.event,))
    if isinstance(rule, NotRule):
        return event_names(rule.rule)
    if isinstance(rule, AllRule | AnyRule):
        return frozenset(name for item in rule.rules for name in event_names(item))
    return frozenset()


def tag_names(rule: Rule) -> frozenset[str]:
    """Every tag a tag condition of ``rule`` reads, at any depth."""
    if isinstance(rule, TagCondition):
        return frozenset((rule.tag,))
    if isinstance(rule, NotRule):
        return tag_names(rule.rule)
    if isinstance(rule, AllRule | AnyRule):
        return frozenset(name for item in rule.rules for name in tag_names(item))
    return frozenset()


class RuleModel(Model):
    """One ``[rules.NAME]`` table."""

    tag: TagName
    mode: Annotated[str, choice(*MODES)] = "sync"
    recheck: Duration = DEFAULT_RECHECK
    description: Annotated[str, Field(max_length=500)] | None = None
    segment: Any = Field(default=None)

    @classmethod
    def cross_checks(cls, raw: Mapping[str, Any], value: Any, info: ValidationInfo) -> Problems:
        found: Problems = []
        if value is not None and value.recheck < MIN_RECHECK:
            found.append((("recheck",), f"must be at least {MIN_RECHECK:g}s"))
        return found + cls._segment_problems(raw)

    @classmethod
    def _segment_problems(cls, raw: Mapping[str, Any]) -> Problems:
        if "segment" not in raw:
            return [(("segment",), "required: the segment that decides who carries the tag")]
        segment = raw["segment"]
        if not isinstance(segment, Mapping):
            got = "null" if segment is None else SPEC_WORDS.kind(segment)
            return [(("segment",), f"must be a table, not {got}")]
        try:
            parse_segment(raw["segment"], "segment")
        except SegmentError as exc:
            return [(path, message) for path, message in exc.issues]
        return []


class RulesModel(Model):
    """The rules file: ``rules`` by name (an empty file retires every rule)."""

    rules: Annotated[dict[Name, RuleModel], Field(max_length=MAX_RULES)] = Field(
        default_factory=dict
    )

    @classmethod
    def cross_checks(cls, raw: Mapping[str, Any], value: Any, info: ValidationInfo) -> Problems:
        rules = raw.get("rules")
        if not isinstance(rules, Mapping):
            return []
        owners: dict[str, str] = {}
        found: Problems = []
        for name, table in rules.items():
            tag = table.get("tag") if isinstance(table, Mapping) else None
            if not isinstance(tag, str):
                continue
            if tag in owners:
                found.append(
                    (
                        ("rules", name, "tag"),
                        f"tag {tag!r} is already maintained by rule {owners[tag]!r}:"
                        " one rule per tag",
                    )
                )
            else:
                owners[tag] = name
        return found


def parse_rules(data: Any) -> list[TagRule]:
    """Validate a parsed rules file; raise :class:`RulesError` listing every issue."""
    if not isinstance(data, Mapping):
        raise RulesError([("", f"a rules file must be a table, not {SPEC_WORDS.kind(data)}")])
    try:
        model = RulesModel.model_validate(data, context={})
    except ValidationError as exc:
        raise RulesError(issues_of(exc, SPEC_WORDS)) from None
    return [
        TagRule(
            name=name,
            tag=rule.tag,
            mode="add" if rule.mode == "add" else "sync",
            segment=parse_segment(rule.segment, f"rules.{name}.segment"),
            recheck=float(rule.recheck),
            description=rule.description,
        )
        for name, rule in model.rules.items()
    ]


def load_rules(text: str, fmt: Literal["toml", "json"] = "toml") -> list[TagRule]:
    """Parse TOML or JSON text and validate it with :func:`parse_rules`."""
    data: Any
    try:
        if fmt == "toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise RulesError([("", f"invalid {fmt.upper()}: {exc}")]) from None
    except RecursionError:
        raise RulesError([("", f"invalid {fmt.upper()}: nested too deeply to read")]) from None
    where = find_surrogate(data)
    if where is not None:
        raise RulesError([(where if where != "(value)" else "", SURROGATE_MESSAGE)])
    return parse_rules(data)


def rule_from_row(row: Any) -> TagRule:
    """The rule of a stored ``tag_rule_versions`` row."""
    return TagRule(
        name=str(row["name"]),
        tag=str(row["tag"]),
        mode="add" if row["mode"] == "add" else "sync",
        segment=parse_segment(json.loads(row["segment"])),
        recheck=float(row["recheck"]),
        description=row["description"],
    )
