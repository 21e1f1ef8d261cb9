"""Every mistake at once, with its key path: ``check-config`` and ``campaign apply`` through
the models, including the options models that plugin types declare."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.daemon import _script, init_instance, new_instance_dir, wait_until

pytestmark = pytest.mark.slow

# A plugin (from plugins.dirs) with a channel type and a reward provider, each
# declaring its options model the way docs/plugins.md shows.
SMS_PLUGIN = """
from typing import Annotated

from pydantic import Field

from promod import hookimpl
from promod.rewards.provider import IssuedReward
from promod.schema import Model, NonEmpty, PositiveNumber


class SmsOptions(Model):
    sender: NonEmpty
    rate: PositiveNumber | None = None


class SmsType:
    type = "sms"
    options_model = SmsOptions

    def create(self, name, options):
        raise RuntimeError("not used in this test")


class MilesSettings(Model):
    programme: Annotated[str, Field(pattern="^[A-Z]{2}$")]


class MilesOptions(Model):  # the keys of [reward] besides provider, amount, value, currency
    options: MilesSettings


class Miles:
    name = "air_miles"
    transactional = False
    options_model = MilesOptions

    async def issue(self, grant):
        return IssuedReward(reference=str(grant.id))

    async def revoke(self, grant, reference):
        return None


@hookimpl
def promod_register_channels():
    return [SmsType()]


@hookimpl
def promod_register_reward_providers():
    return [Miles()]
"""


def _instance() -> Path:
    root = new_instance_dir()
    init_instance(root)
    plugins = root / "plugins"
    plugins.mkdir()
    (plugins / "sms_plugin.py").write_text(SMS_PLUGIN)
    cfg = root / "promod.toml"
    cfg.write_text(cfg.read_text().replace("dirs = []", 'dirs = ["plugins"]', 1))
    return root


def _check_config(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_script("promod"), "check-config", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _error_lines(stderr: str) -> dict[str, str]:
    """``path: message`` lines of promod's error listing."""
    found = {}
    for line in stderr.splitlines()[1:]:
        path, _, message = line.strip().partition(": ")
        found[path] = message
    return found


def test_check_config_prints_five_different_mistakes_with_their_paths() -> None:
    root = _instance()
    cfg = root / "promod.toml"
    text = cfg.read_text()
    text = text.replace("[supervisor]\n", "[supervisor]\nmax_restart = 5\n", 1)  # unknown key
    text = text.replace("max_restarts = 5", 'max_restarts = "5"', 1)  # wrong type
    text = text.replace('shutdown_timeout = "30s"', 'shutdown_timeout = "30 seconds"', 1)
    text += '\n[policy.budgets.coupon]\nEUR = { lifetime = "12,50" }\n'  # a bad money string
    text += (
        '\n[channels.alerts]\ntype = "webhook"\nurl = "http://127.0.0.1:9/x"\n'
        'secret = "s"\nretries = 3\n'  # an option the webhook type does not have
    )
    cfg.write_text(text)
    res = _check_config(cfg)
    assert res.returncode == 1, res
    found = _error_lines(res.stderr)
    assert found == {
        "supervisor.max_restart": "unknown key",
        "supervisor.max_restarts": "expected an integer, got string",
        "daemon.shutdown_timeout": (
            "invalid duration '30 seconds': use a number with a unit ms, s, m, h or d,"
            " such as '30s'"
        ),
        "policy.budgets.coupon.EUR.lifetime": (
            "invalid amount '12,50': use a non-negative decimal string such as '5.00'"
        ),
        "channels.alerts.retries": "unknown key",
    }, res.stderr
    assert "5 error(s)" in res.stderr.splitlines()[0]


def test_a_plugin_channel_type_checks_its_options_at_check_config() -> None:
    root = _instance()
    cfg = root / "promod.toml"
    good = cfg.read_text() + '\n[channels.text]\ntype = "sms"\nsender = "PROMO"\nrate = 2\n'
    cfg.write_text(good)
    assert _check_config(cfg).returncode == 0
    cfg.write_text(good.replace('sender = "PROMO"', "sender = 5").replace("rate = 2", "rate = 0"))
    res = _check_config(cfg)
    assert res.returncode == 1
    assert _error_lines(res.stderr) == {
        "channels.text.sender": "expected a string, got integer",
        "channels.text.rate": "must be a positive number, got 0",
    }
    cfg.write_text(good.replace('type = "sms"', 'type = "pager"'))
    res = _check_config(cfg)
    assert res.returncode == 1
    assert _error_lines(res.stderr) == {
        "channels.text.type": "no plugin provides channel type 'pager' (known: sms, smtp, webhook)"
    }


def _bad_spec() -> str:
    return """
id = "bad"
name = "Five mistakes"
kind = "past_behavior"
timezone = "UTC"
colour = "red"

[segment]
tag = "bonus_interest"

[reward]
provider = "partner_voucher"
value = "10.00"
currency = "EUR"
options = { base_url = "http://127.0.0.1:9", brand = "acme" }

[caps]
budget = "12,50"
daily_count = "x"

[clearance]
required = true
lead = "soon"
"""


def test_campaign_apply_reports_five_mistakes_with_their_paths(daemon_factory) -> None:
    d = daemon_factory()
    path = d.root / "bad.toml"
    path.write_text(_bad_spec())
    res = d.ctl("campaign", "apply", "-f", str(path))
    assert res.returncode == 1
    assert "5 error(s)" in res.stderr.splitlines()[0]
    found = _error_lines(res.stderr)
    assert found == {
        "colour": "unknown key",
        "caps.daily_count": "must be an integer, not a string",
        "clearance.lead": (
            "invalid duration 'soon': use a number with a unit ms, s, m, h or d, such as '30s'"
        ),
        "caps.budget": "invalid amount '12,50': use a plain decimal string such as \"5.00\"",
        "reward.options.brand": "unknown key",
    }, found
    assert d.ctl_json("campaign", "list") == []


def test_a_plugin_provider_checks_its_reward_options_at_apply(daemon_factory) -> None:
    d = daemon_factory(edits={r"^dirs = \[\]": 'dirs = ["plugins"]'}, start=False)
    (d.root / "plugins").mkdir()
    (d.root / "plugins" / "sms_plugin.py").write_text(SMS_PLUGIN)
    d.start()
    spec = (
        'id = "miles"\nname = "Miles"\nkind = "past_behavior"\n[segment]\ntag = "x"\n'
        '[reward]\nprovider = "air_miles"\noptions = { programme = "lufthansa" }\n'
    )
    path = d.root / "miles.toml"
    path.write_text(spec)
    res = d.ctl("campaign", "apply", "-f", str(path))
    assert res.returncode == 1
    assert list(_error_lines(res.stderr)) == ["reward.options.programme"]
    path.write_text(spec.replace('"lufthansa"', '"LH"'))
    assert d.ctl("campaign", "apply", "-f", str(path)).returncode == 0
    assert [c["id"] for c in d.ctl_json("campaign", "list")] == ["miles"]


def test_partner_voucher_options_are_checked_at_apply(daemon_factory) -> None:
    d = daemon_factory()
    spec = _bad_spec().replace('colour = "red"\n', "")
    spec = spec.replace('budget = "12,50"\ndaily_count = "x"', "").replace('lead = "soon"', "")
    spec = spec.replace('base_url = "http://127.0.0.1:9", brand = "acme"', 'timeout = "forever"')
    path = d.root / "partner.toml"
    path.write_text(spec)
    res = d.ctl("campaign", "apply", "-f", str(path))
    assert res.returncode == 1
    assert set(_error_lines(res.stderr)) == {"reward.options.timeout", "reward.options.base_url"}


def test_promodctl_plugins_shows_each_type_with_the_options_of_its_model(daemon_factory) -> None:
    d = daemon_factory(edits={r"^dirs = \[\]": 'dirs = ["plugins"]'}, start=False)
    (d.root / "plugins").mkdir()
    (d.root / "plugins" / "sms_plugin.py").write_text(SMS_PLUGIN)
    d.start()
    types = {
        (t["kind"], t["type"]): t["options"] for p in d.ctl_json("plugins") for t in p["types"]
    }
    assert {("channel", "sms"), ("channel", "smtp"), ("connector", "csv")} <= set(types)
    assert {("provider", "air_miles"), ("provider", "partner_voucher")} <= set(types)
    sms = types[("channel", "sms")]
    assert sms["required"] == ["sender"] and set(sms["properties"]) == {"sender", "rate"}
    assert types[("channel", "smtp")]["properties"]["timeout"]["default"] == "30s"
    human = d.ctl("plugins").stdout
    assert "channel sms options:" in human
    sender = next(line for line in human.splitlines() if line.strip().startswith("sender"))
    assert "required" in sender
    assert "connector csv options:" in human and "provider air_miles options:" in human


def test_sighup_refuses_channels_their_plugin_types_do_not_accept(daemon_factory) -> None:
    d = daemon_factory()
    good = d.config_path.read_text()
    bad = good + '\n[channels.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:9/x"\nsekret = "s"\n'
    bad += '\n[channels.pager]\ntype = "pager"\nnumber = "112"\n'
    d.config_path.write_text(bad)
    d.signal(signal.SIGHUP)
    wait_until(lambda: "config_reload_rejected" in d.logs(), what="the reload to be refused")
    assert "channels.hook.sekret: unknown key" in d.logs()
    assert "channels.hook: set secret or secret_env" in d.logs()
    assert "channels.pager.type: no plugin provides channel type 'pager'" in d.logs()
    assert d.ctl_json("status")["reloads"] == 0
    d.config_path.write_text(bad.replace("sekret", "secret").split("[channels.pager]")[0])
    d.signal(signal.SIGHUP)
    wait_until(lambda: d.ctl_json("status")["reloads"] == 1, what="the fixed config to load")
