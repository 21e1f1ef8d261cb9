"""Custom lists end to end: promodctl import, HTTP replace/add, targeting, audit, delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.daemon import Daemon, wait_until
from tests.support.data import seed_customers, wallet_spec

pytestmark = pytest.mark.slow

NO_SITE_BUDGET = {r"^EUR = \{[^\n]*\}": ""}


def _db(d: Daemon) -> Path:
    return d.root / "state" / "promod.db"


def _http(d: Daemon) -> httpx.Client:
    base = "http://" + d.ctl_json("status")["http"]
    token = (d.root / "http-token").read_text().strip()
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _run(d: Daemon, spec: str, campaign: str) -> dict[str, Any]:
    path = d.root / f"{campaign}.toml"
    path.write_text(spec)
    res = d.ctl("campaign", "apply", "-f", str(path))
    assert res.returncode == 0, res.stderr
    assert d.ctl("campaign", "launch", campaign).returncode == 0
    wait_until(
        lambda: d.ctl_json("campaign", "report", campaign)["state"] == "completed",
        timeout=60,
        what=f"{campaign} to complete",
    )
    report: dict[str, Any] = d.ctl_json("campaign", "report", campaign)
    return report


def _granted(d: Daemon, campaign: str) -> set[str]:
    import sqlite3

    with sqlite3.connect(_db(d)) as conn:
        rows = conn.execute(
            "SELECT customer_id FROM grants WHERE campaign_id = ? AND state = 'issued'",
            (campaign,),
        ).fetchall()
    return {r[0] for r in rows}


def custom_list_spec(campaign: str, list_name: str) -> str:
    spec = wallet_spec(campaign, segment="")
    spec = spec.replace('kind = "past_behavior"', f'kind = "custom_list"\nlist = "{list_name}"')
    return spec.replace("[segment]\n", "")


def test_lists_import_fills_a_custom_list_that_its_campaign_then_targets(daemon_factory) -> None:
    d = daemon_factory(edits=NO_SITE_BUDGET)
    seed_customers(_db(d), [f"c{i}" for i in range(8)], tags=())
    ids = d.root / "vip.txt"
    ids.write_text("c0\nc1\n\nc2\nc3\nghost\nc1\n")  # a blank line, a repeat, no profile
    res = d.ctl("lists", "import", "vip", str(ids))
    assert res.returncode == 0, res.stderr
    assert "5 members" in res.stdout
    assert "1 member(s) have no customer profile: ghost" in res.stdout

    assert d.ctl("lists", "import", "vip", str(ids), "--add", "--replace").returncode == 2

    # A bad file changes nothing and names its bad rows by line.
    bad = d.root / "bad.jsonl"
    bad.write_text('{"id": "c4"}\n{"name": "no id"}\n{"id": ""}\n{"id": "c5"}\n')
    res = d.ctl("lists", "import", "vip", str(bad))
    assert res.returncode == 1
    assert "line 2: the object has no id" in res.stderr
    assert "line 3: id must not be empty" in res.stderr
    no_id = d.root / "no-id.csv"
    no_id.write_text("customer,name\nc4,x\n")
    res = d.ctl("lists", "import", "vip", str(no_id))
    assert res.returncode == 1 and "line 1" in res.stderr
    shown = d.ctl_json("lists", "show", "vip")
    assert shown["members"] == 5 and shown["version"] == 1
    assert shown["without_profile_ids"] == ["ghost"]

    # --add from a CSV with an id column keeps the list and adds to it.
    more = d.root / "more.csv"
    more.write_text("id,note\nc4,new\nc0,again\n")
    added = d.ctl_json("lists", "import", "vip", str(more), "--add")
    assert (added["members"], added["added"], added["removed"]) == (6, 1, 0)

    report = _run(d, custom_list_spec("viplist", "vip"), "viplist")
    assert report["targeted"] == 6
    assert _granted(d, "viplist") == {"c0", "c1", "c2", "c3", "c4", "ghost"}

    # The default (replace) makes the file the whole list, in one version step.
    ids.write_text("c6\nc7\n")
    replaced = d.ctl_json("lists", "import", "vip", str(ids))
    assert (replaced["members"], replaced["added"], replaced["removed"]) == (2, 2, 6)
    listed = d.ctl_json("lists", "list")
    assert [(r["list"], r["members"]) for r in listed] == [("vip", 2)]
    assert [v["state"] for v in d.ctl_json("lists", "show", "vip")["versions"]][:2] == [
        "current",
        "retired",
    ]

    audited = [r["command"] for r in d.ctl_json("audit")]
    assert audited.count("lists.import.commit") == 4  # three applied, one refused
    assert "lists.import.chunk" not in audited  # customer ids stay out of the audit log


def test_lists_over_http_replace_add_and_feed_a_segment_rule(daemon_factory) -> None:
    d = daemon_factory(edits=NO_SITE_BUDGET)
    seed_customers(_db(d), ["a", "b", "c"], tags=("bonus_interest",))
    seed_customers(_db(d), ["d"], tags=())
    with _http(d) as c:
        r = c.put("/v1/lists/beta", json={"customer_ids": ["a", "d", "nobody"]})
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["members"], body["added"], body["without_profile_ids"]) == (
            3,
            3,
            ["nobody"],
        )
        r = c.post("/v1/lists/beta:add", json={"customer_ids": ["b", "a"]})
        assert r.status_code == 200, r.text
        assert (r.json()["members"], r.json()["added"]) == (4, 1)
        r = c.put("/v1/lists/beta", json={"customer_ids": ["a", " b", 7]})
        assert r.status_code == 422
        errors = r.json()["error"]["details"]["errors"]
        assert [e["path"] for e in errors] == ["customer_ids[1]", "customer_ids[2]"]
        r = c.put("/v1/lists/beta", json={"customer_ids": None})
        assert r.status_code == 422
        r = c.put("/v1/lists/bad:name", json={"customer_ids": []})
        assert r.status_code == 422
        assert r.json()["error"]["details"]["errors"][0]["field"] == "name"
    assert d.ctl_json("lists", "show", "beta")["members"] == 4  # refusals stored nothing

    segment = 'all = [{ tag = "bonus_interest" }, { list = "beta" }]'
    report = _run(d, wallet_spec("seg", segment=segment), "seg")
    assert _granted(d, "seg") == {"a", "b"}
    assert report["targeted"] == 2


def test_a_list_in_use_is_not_deleted_without_force(daemon_factory) -> None:
    d = daemon_factory(edits=NO_SITE_BUDGET)
    seed_customers(_db(d), ["a"])
    path = d.root / "l.txt"
    path.write_text("a\n")
    assert d.ctl("lists", "import", "keep", str(path)).returncode == 0
    spec = custom_list_spec("draft", "keep")
    (d.root / "draft.toml").write_text(spec)
    assert d.ctl("campaign", "apply", "-f", str(d.root / "draft.toml")).returncode == 0
    res = d.ctl("lists", "delete", "keep")
    assert res.returncode == 1 and "draft" in res.stderr
    deleted = d.ctl_json("lists", "delete", "keep", "--force")
    assert deleted["deleted"] is True and deleted["used_by"] == ["draft"]
    assert d.ctl("lists", "show", "keep").returncode == 1
    audit = [r for r in d.ctl_json("audit") if r["command"] == "lists.delete"]
    assert [r["outcome"] for r in audit] == ["error", "ok"], json.dumps(audit)


def test_a_daemon_killed_during_a_list_import_keeps_the_old_list_whole(daemon_factory) -> None:
    d = daemon_factory(edits=NO_SITE_BUDGET)
    path = d.root / "l.txt"
    path.write_text("a\nb\n")
    assert d.ctl("lists", "import", "vip", str(path)).returncode == 0
    begun = d.request("lists.import.begin", {"list": "vip", "format": "lines"})
    assert begun["ok"], begun
    import_id = begun["result"]["import_id"]
    rows = [{"line": i + 1, "text": f"n{i}"} for i in range(2000)]
    chunk = d.request("lists.import.chunk", {"import_id": import_id, "rows": rows})
    assert chunk["ok"] and chunk["result"]["valid"] == 2000, chunk
    d.kill()  # SIGKILL between the chunks and the commit
    d.start()
    shown = d.ctl_json("lists", "show", "vip")
    assert (shown["members"], shown["version"], shown["sample"]) == (2, 1, ["a", "b"])
    report = _run(d, custom_list_spec("after", "vip"), "after")
    assert report["targeted"] == 2
    path.write_text("c\n")
    assert d.ctl_json("lists", "import", "vip", str(path))["members"] == 1
