"""The rules file of ``tags apply``: validation with every error at once, and the model."""

from __future__ import annotations

import json

import pytest

from promod.campaigns.segments import parse_segment
from promod.tags.rules import RulesError, TagRule, load_rules, parse_rules

GOOD = """
[rules.bonus_interest]
tag = "bonus_interest"
description = "looked at the bonus page lately"
segment = { event = "page_view", within = "30d", where = { page = { eq = "/bonus" } } }

[rules.revenue_incomplete_profile]
tag = "revenue_incomplete_profile"
mode = "add"
recheck = "15m"
segment = { all = [
  { event = "purchase", within = "90d", sum = "amount", gt = 0 },
  { not = { attr = "profile_complete", eq = true } },
] }
"""


def test_a_good_file_gives_its_rules_with_defaults() -> None:
    bonus, revenue = load_rules(GOOD)
    assert bonus == TagRule(
        name="bonus_interest",
        tag="bonus_interest",
        mode="sync",
        segment=parse_segment(
            {"event": "page_view", "within": "30d", "where": {"page": {"eq": "/bonus"}}}
        ),
        recheck=3600.0,
        description="looked at the bonus page lately",
    )
    assert bonus.events == {"page_view"}
    assert revenue.mode == "add" and revenue.recheck == 900.0
    assert revenue.events == {"purchase"}


def test_to_dict_reads_back_to_an_equal_rule() -> None:
    for rule in load_rules(GOOD):
        again = parse_rules({"rules": {rule.name: rule.to_dict()}})
        assert again == [rule]


def test_every_error_is_reported_at_once_with_its_key_path() -> None:
    text = """
[rules.a]
tag = "shared"
segment = { tag = "vip" }

[rules.b]
tag = "shared"
mode = "sometimes"
recheck = "9x"
colour = "red"
segment = { all = [{ event = "purchase", within = "9x" }, { tag = "" }] }

[rules.c]
tag = "c"

[rules."bad name"]
tag = "d"
segment = {}

[extra]
"""
    with pytest.raises(RulesError) as caught:
        load_rules(text)
    paths = {path for path, _ in caught.value.issues}
    assert {
        "rules.b.mode",
        "rules.b.recheck",
        "rules.b.colour",
        "rules.b.segment.all[0].within",
        "rules.b.segment.all[1].tag",
        "rules.b.tag",
        "rules.c.segment",
        "extra",
    } <= paths
    assert any("bad name" in path for path in paths)
    messages = dict(caught.value.issues)
    assert "one rule per tag" in messages["rules.b.tag"]
    assert messages["rules.b.colour"] == "unknown key"
    assert "required" in messages["rules.c.segment"]


def test_bad_text_and_json_are_refused_clearly() -> None:
    with pytest.raises(RulesError, match="invalid TOML"):
        load_rules("[rules.a\n")
    with pytest.raises(RulesError, match="invalid JSON"):
        load_rules("{", "json")
    rules = load_rules(json.dumps({"rules": {"x": {"tag": "x", "segment": {"tag": "y"}}}}), "json")
    assert rules[0].events == frozenset()
    with pytest.raises(RulesError, match="must be a table"):
        parse_rules(["not", "a", "table"])


def test_a_null_value_is_refused_not_taken_as_absent() -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules({"rules": {"x": {"tag": None, "segment": {"tag": "y"}}}})
    assert [path for path, _ in caught.value.issues] == ["rules.x.tag"]
    with pytest.raises(RulesError) as caught:
        parse_rules({"rules": {"x": {"tag": "x", "segment": None}}})
    assert caught.value.issues == [("rules.x.segment", "must be a table, not null")]


def test_a_recheck_shorter_than_a_second_is_refused() -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules({"rules": {"x": {"tag": "x", "recheck": "500ms", "segment": {"tag": "y"}}}})
    assert caught.value.issues == [("rules.x.recheck", "must be at least 1s")]


def test_event_names_are_found_at_any_depth() -> None:
    (rule,) = parse_rules(
        {
            "rules": {
                "r": {
                    "tag": "t",
                    "segment": {
                        "any": [
                            {"not": {"event": "login", "within": "7d"}},
                            {"all": [{"tag": "x"}, {"event": "deposit"}]},
                        ]
                    },
                }
            }
        }
    )
    assert rule.events == {"login", "deposit"}
    assert rule.reads_tags == {"x"}


def test_the_sample_rules_file_is_valid() -> None:
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "config" / "tags" / "loyalty.toml"
    rules = load_rules(sample.read_text())
    assert [(r.name, r.mode) for r in rules] == [
        ("bonus_interest", "sync"),
        ("revenue_incomplete_profile", "add"),
    ]
