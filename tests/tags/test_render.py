"""promodctl's human output of the tags commands."""

from __future__ import annotations

from promod.ctl.main import build_parser
from promod.ctl.tags import (
    render_tag,
    render_tag_apply,
    render_tag_edit,
    render_tag_history,
    render_tag_reasons,
    render_tag_rules,
    render_tag_simulation,
    render_tags,
)

T = 1_800_000_000.0
CHANGE = {
    "id": 7,
    "customer_id": "c1",
    "tag": "vip",
    "change": "added",
    "source": "operator:bob",
    "reason": "call",
    "at": T,
}
RULE = {"tag": "vip", "mode": "sync", "recheck": "1h", "segment": {"tag": "x"}}


def test_apply_simulate_and_edits() -> None:
    text = render_tag_apply(
        {"created": [{"name": "a", "version": 1}], "retired": [{"name": "b", "version": 3}]}
    )
    assert text == "a: created, version 1\nb: retired, version 3"
    assert render_tag_apply({"created": []}) == "(no rules)"
    sim = render_tag_simulation(
        {
            "as_of": T,
            "rules": [
                {
                    "name": "a",
                    "tag": "t",
                    "mode": "sync",
                    "matching": 5,
                    "would_add": 2,
                    "would_remove": 1,
                }
            ],
        }
    )
    assert "nothing written" in sim and "WOULD ADD" in sim
    assert render_tag_edit({"customer": "c1", "tag": "vip", "added": False}) == (
        "c1: vip already there"
    )
    assert render_tag_edit({"customer": "c1", "tag": "vip", "removed": True}) == "c1: vip removed"


def test_list_show_rules_history_and_reasons() -> None:
    listed = render_tags(
        [
            {
                "tag": "vip",
                "customers": 3,
                "rule": "r",
                "version": 2,
                "mode": "add",
                "checked_at": T,
            },
            {"tag": "x", "customers": 1, "rule": None, "version": None, "mode": None},
        ]
    )
    assert "r@2 (add)" in listed
    shown = render_tag(
        {
            "tag": "vip",
            "customers": 3,
            "by_source": {"rule:r@2": 3},
            "rule": {"name": "r", "version": 2, "versions": 2, "checked_at": T, **RULE},
            "recent": [CHANGE],
        }
    )
    assert "r version 2 (2 kept)" in shown and "operator:bob" in shown
    assert "CURRENT" in render_tag_rules(
        [{"version": 1, "current": True, "applied_at": T, "applied_by": "bob", "rule": RULE}]
    )
    assert "RECHECK" in render_tag_rules([{"name": "r", "version": 1, "checked_at": None, **RULE}])
    assert "call" in render_tag_history([CHANGE])
    reasons = render_tag_reasons(
        [
            {"tag": "vip", "source": "operator:bob", "reason": "call", "since": T},
            {"tag": "old", "source": None, "reason": None, "since": None},
        ]
    )
    assert "  vip: operator:bob: call, since " in reasons
    assert "  old: (no source: older than tag history)" in reasons


def test_the_command_line() -> None:
    parser = build_parser()
    ns = parser.parse_args(["tags", "add", "c1", "vip", "--reason", "call"])
    assert ns.ctl_command.command == "tags.add"
    assert ns.ctl_command.request_args(ns) == {"customer": "c1", "tag": "vip", "reason": "call"}
    ns = parser.parse_args(["tags", "history", "--customer", "c1", "--limit", "5"])
    assert ns.ctl_command.request_args(ns) == {"customer": "c1", "limit": 5}
    ns = parser.parse_args(["tags", "rules"])
    assert ns.ctl_command.request_args(ns) == {}
