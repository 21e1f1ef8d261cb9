"""Tag rules in the daemon subprocess: events over HTTP set tags at once, the scheduled
check removes expired ones (test clock, and once on the system clock), sync vs add,
manual edits over promodctl and HTTP (audited, in the tag history), simulate writes
nothing, and ``customers show`` says why each tag is there."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.support.daemon import Daemon, wait_until

pytestmark = pytest.mark.slow

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()
DAY = 86400

RULES = """
[rules.bonus_interest]
tag = "bonus_interest"
mode = "sync"
recheck = "1h"
segment = { event = "page_view", within = "30d", where = { page = { eq = "/bonus" } } }

[rules.revenue_incomplete_profile]
tag = "revenue_incomplete_profile"
mode = "add"
recheck = "1h"
segment = { all = [
  { event = "purchase", within = "90d", sum = "amount", gt = 0 },
  { not = { attr = "profile_complete", eq = true } },
] }
"""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Api:
    """The daemon's HTTP API with its token."""

    def __init__(self, d: Daemon) -> None:
        self.base = "http://" + d.call("status")["http"]
        self.headers = {"Authorization": f"Bearer {(d.root / 'http-token').read_text().strip()}"}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.base + path, headers=self.headers, timeout=10, **kwargs)

    def events(self, *events: dict[str, Any]) -> None:
        r = self.call("POST", "/v1/events", json={"events": list(events)})
        assert r.status_code == 200, r.text


def _event(eid: str, customer: str, name: str, ts: float, **props: Any) -> dict[str, Any]:
    return {"id": eid, "customer_id": customer, "name": name, "ts": _iso(ts), "properties": props}


def _query(d: Daemon, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(d.root / "state" / "promod.db", timeout=30) as conn:
        return conn.execute(sql, params).fetchall()


def _tagged(d: Daemon, tag: str) -> set[str]:
    return {r[0] for r in _query(d, "SELECT customer_id FROM customer_tags WHERE tag = ?", (tag,))}


def _snapshot(d: Daemon) -> list[Any]:
    return [
        _query(d, f"SELECT * FROM {table} ORDER BY 1, 2")
        for table in ("customer_tags", "tag_history", "tag_rules", "tag_rule_versions")
    ]


def test_tag_rules_on_events_on_schedule_and_by_hand(
    daemon_factory: Callable[..., Daemon],
) -> None:
    d = daemon_factory(env={"PROMOD_TEST_CLOCK": str(T0)})
    api = Api(d)
    customers = [
        {"id": "ann", "attributes": {"profile_complete": False}},
        {"id": "bob", "attributes": {}},
        {"id": "cat", "attributes": {"profile_complete": True}},
    ]
    r = api.call("POST", "/v1/customers:batch", json={"customers": customers})
    assert r.status_code == 200, r.text

    # A bad rules file is refused with every error, naming the field; nothing stored.
    (d.root / "bad.toml").write_text(
        '[rules.x]\ntag = "x"\nmode = "often"\nsegment = { event = "e", within = "9x" }\n'
    )
    bad = d.ctl("tags", "apply", "-f", str(d.root / "bad.toml"))
    assert bad.returncode == 1
    assert "rules.x.mode" in bad.stderr and "rules.x.segment.within" in bad.stderr
    assert _query(d, "SELECT count(*) FROM tag_rules") == [(0,)]

    (d.root / "rules.toml").write_text(RULES)
    applied = d.ctl("tags", "apply", "-f", str(d.root / "rules.toml"))
    assert applied.returncode == 0, applied.stderr
    assert "bonus_interest: created, version 1" in applied.stdout
    d.settle()  # the first checks over every customer ran at T0; the next is an hour on
    assert _tagged(d, "bonus_interest") == set()

    # Events set the tags at once, on the event path (the clock does not move).
    api.events(
        _event("p1", "ann", "page_view", T0 - 60, page="/bonus"),
        _event("p2", "cat", "page_view", T0 - 60, page="/home"),
        _event("o1", "bob", "purchase", T0 - 60, amount="19.90"),
        _event("o2", "cat", "purchase", T0 - 60, amount="5.00"),
    )
    wait_until(lambda: _tagged(d, "bonus_interest") == {"ann"}, timeout=10, what="bonus tag")
    wait_until(
        lambda: _tagged(d, "revenue_incomplete_profile") == {"bob"},
        timeout=10,
        what="revenue tag",
    )
    shown = d.call("customers.show", {"customer": "bob"})
    assert shown["tags"] == ["revenue_incomplete_profile"]
    assert shown["tag_reasons"][0]["source"] == "rule:revenue_incomplete_profile@1"
    human = d.ctl("customers", "show", "bob").stdout
    assert "revenue_incomplete_profile: rule:revenue_incomplete_profile@1" in human

    # simulate writes nothing and counts what a changed rule would do now.
    before = _snapshot(d)
    (d.root / "wider.toml").write_text(RULES.replace('eq = "/bonus"', 'ne = "/nowhere"'))
    sim = d.ctl_json("tags", "simulate", "-f", str(d.root / "wider.toml"))
    bonus = next(r for r in sim["rules"] if r["name"] == "bonus_interest")
    assert (bonus["matching"], bonus["would_add"], bonus["would_remove"]) == (2, 1, 0)
    assert _snapshot(d) == before

    # Manual edits, by promodctl and over HTTP: in the history and the audit log.
    added = d.ctl("tags", "add", "cat", "vip", "--reason", "phone call")
    assert added.returncode == 0 and "vip added" in added.stdout, added.stderr
    r = api.call("POST", "/v1/customers/ann/tags/beta", params={"reason": "signed up for beta"})
    assert r.status_code == 200 and r.json()["changed"] is True, r.text
    r = api.call("DELETE", "/v1/customers/cat/tags/vip")
    assert r.status_code == 200 and r.json()["changed"] is True, r.text
    assert api.call("POST", "/v1/customers/nobody/tags/x").status_code == 404
    history = d.call("tags.history", {"customer": "cat"})
    assert [(h["tag"], h["change"], h["source"].split(":")[0]) for h in history] == [
        ("vip", "removed", "api"),
        ("vip", "added", "operator"),
    ]
    assert history[1]["reason"] == "phone call"
    audited = {row["command"] for row in d.call("audit", {"limit": 50})}
    assert {"tags.apply", "tags.add", "http.tags.add", "http.tags.remove"} <= audited
    assert api.call("GET", "/v1/customers/ann/tags").json()["tags"][0]["tag"] == "beta"

    # 31 days on, ann's page view has left the window: the scheduled check removes the
    # sync rule's tag. The add rule keeps bob's tag even when his purchase is 91 days old.
    assert d.request("clock.advance", {"to": T0 + 31 * DAY})["ok"]
    wait_until(lambda: _tagged(d, "bonus_interest") == set(), timeout=10, what="the expiry")
    assert d.request("clock.advance", {"to": T0 + 91 * DAY})["ok"]
    d.settle()
    assert _tagged(d, "revenue_incomplete_profile") == {"bob"}
    assert _tagged(d, "beta") == {"ann"}  # a manual tag is not the sync rule's to remove
    changes = d.call("tags.history", {"tag": "bonus_interest"})
    assert [(h["customer_id"], h["change"], h["source"]) for h in changes] == [
        ("ann", "removed", "rule:bonus_interest@1"),
        ("ann", "added", "rule:bonus_interest@1"),
    ]
    assert changes[0]["at"] == T0 + 31 * DAY
    listed = {row["tag"]: row for row in d.call("tags.list")}
    assert listed["revenue_incomplete_profile"]["customers"] == 1
    assert listed["bonus_interest"]["rule"] == "bonus_interest"
    assert d.ctl("tags", "show", "bonus_interest").returncode == 0

    # Killed before the tagger looked at a stored event: the next start evaluates it, once.
    d.kill()
    with sqlite3.connect(d.root / "state" / "promod.db", timeout=30) as conn:
        conn.execute(
            "INSERT INTO events (customer_id, name, ts, properties)"
            """ VALUES ('cat', 'page_view', ?, '{"page": "/bonus"}')""",
            (int(T0 + 91 * DAY - 60),),
        )
    d.env["PROMOD_TEST_CLOCK"] = str(T0 + 91 * DAY)
    d.start()
    wait_until(lambda: _tagged(d, "bonus_interest") == {"cat"}, timeout=20, what="after restart")
    d.settle()
    added = _query(
        d,
        "SELECT count(*) FROM tag_history WHERE customer_id = 'cat' AND tag = 'bonus_interest'",
    )
    assert added == [(1,)]


def test_a_tag_expires_on_the_system_clock(daemon_factory: Callable[..., Daemon]) -> None:
    d = daemon_factory()  # the system clock
    api = Api(d)
    r = api.call("PUT", "/v1/customers/ann", json={})
    assert r.status_code == 201, r.text
    (d.root / "rules.toml").write_text(
        """
[rules.recent]
tag = "recent_visitor"
recheck = "1s"
segment = { event = "page_view", within = "2s" }
"""
    )
    assert d.ctl("tags", "apply", "-f", str(d.root / "rules.toml")).returncode == 0
    seen = float(int(time.time()))
    api.events(_event("p1", "ann", "page_view", seen))
    wait_until(lambda: _tagged(d, "recent_visitor") == {"ann"}, timeout=10, what="the tag")
    wait_until(lambda: _tagged(d, "recent_visitor") == set(), timeout=15, what="the expiry")
    removed = _query(
        d, "SELECT at, source FROM tag_history WHERE change = 'removed' AND tag = 'recent_visitor'"
    )
    assert len(removed) == 1 and removed[0][1] == "rule:recent@1"
    assert removed[0][0] > seen + 2
