"""promod.testing: the fixtures plugin authors use start a real daemon with their plugin."""

from __future__ import annotations

import time

import pytest

from promod.ctl.client import CommandError
from promod.testing import PromodDaemon, start_promod, wait_until

pytestmark = pytest.mark.slow


def test_factory_registers_a_module_by_name_and_gives_a_client(promod_factory) -> None:
    d: PromodDaemon = promod_factory(
        plugins=["tests.plugins.hello_plugin"], edits={r'^level = "info"': 'level = "debug"'}
    )
    assert d.call("hello") == {"hello": "world", "started_hook": True}
    plugins = {p["name"]: p for p in d.call("plugins")}
    assert plugins["tests_plugins_hello_plugin"]["version"] == "2.0"
    assert plugins["tests_plugins_hello_plugin"]["source"] == "dir"
    with pytest.raises(CommandError) as info:
        d.call("no.such.command")
    assert info.value.code == "unknown_command"
    assert d.call("log-level") == {"level": "debug"}
    assert d.http_url is not None and d.http_url.startswith("http://127.0.0.1:")
    assert '"hello"' in d.ctl("--json", "call", "hello").stdout
    assert any(e.get("event") == "ready" for e in d.log_events())
    assert d.stop() == 0
    assert not d.running


def test_a_daemon_that_cannot_start_reports_its_log(tmp_path) -> None:
    bad = tmp_path / "broken.py"
    bad.write_text("raise RuntimeError('plugin import failed on purpose')\n")
    with pytest.raises(RuntimeError, match="on purpose"):
        start_promod(plugins=[bad], timeout=10)


def test_unknown_config_edit_is_refused_and_nothing_is_left(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(ValueError, match="no line matching"):
        start_promod(edits={"^nope = 1": "x"}, start=False)
    assert list(tmp_path.iterdir()) == []


def test_wait_until_polls_less_often_the_longer_it_waits() -> None:
    # 1.5 s at a fixed 20 ms would be 75 calls of the predicate; backing off to a
    # tenth of the time waited it is about 30, and the value still comes back.
    calls: list[float] = []
    until = time.monotonic() + 1.5

    def done() -> str | None:
        calls.append(time.monotonic())
        return "done" if calls[-1] >= until else None

    assert wait_until(done, timeout=30, what="the clock") == "done"
    assert len(calls) < 50, len(calls)


def test_wait_until_names_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0\.1s waiting for the mail"):
        wait_until(lambda: None, timeout=0.1, what="the mail")
