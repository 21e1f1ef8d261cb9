"""PluginHost: hooks called through pluggy in its order, each plugin isolated, tracing on demand."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from structlog.testing import capture_logs

from promod.plugins.host import TRACE_ENV, PluginError, PluginHost

# Registered in file-name order (a, b, c, d); pluggy calls the last registered
# first unless tryfirst/trylast say otherwise.
PLUGINS = {
    "a_last": "@hookimpl(trylast=True)\ndef promod_eligibility_check(customer):\n"
    "    ORDER.append('a_last')\n    return 'a_last'\n",
    "b_boom": "@hookimpl\ndef promod_eligibility_check(customer, campaign):\n"
    "    ORDER.append('b_boom')\n    raise RuntimeError('boom')\n",
    "c_plain": "@hookimpl\ndef promod_eligibility_check(campaign):\n"
    "    ORDER.append('c_plain')\n    return None\n",
    "d_first": "@hookimpl(tryfirst=True)\ndef promod_eligibility_check(customer):\n"
    "    ORDER.append('d_first')\n    return 'd_first'\n",
}
HEADER = "from promod import hookimpl\nfrom tests.plugins.test_host import ORDER\n\n"
ORDER: list[str] = []


def _write(tmp_path: Path, plugins: dict[str, str]) -> Path:
    for name, body in plugins.items():
        (tmp_path / f"{name}.py").write_text(HEADER + body)
    return tmp_path


def _load(tmp_path: Path, plugins: dict[str, str], **kw: object) -> PluginHost:
    return PluginHost.load([_write(tmp_path, plugins)], builtins=(), entry_points=False, **kw)


@pytest.fixture(autouse=True)
def _clear_order() -> None:
    ORDER.clear()


def test_tryfirst_runs_first_and_trylast_last_and_a_raising_plugin_is_isolated(
    tmp_path: Path,
) -> None:
    host = _load(tmp_path, PLUGINS)
    reasons = host.eligibility_check({"id": "c1"}, SimpleNamespace(id="winback"))
    assert ORDER == ["d_first", "c_plain", "b_boom", "a_last"]
    assert reasons == ["d_first", "plugin_error:b_boom", "a_last"]


def test_startup_hooks_run_in_pluggy_order_and_one_failure_does_not_stop_the_rest(
    tmp_path: Path,
) -> None:
    plugins = {
        "one": "@hookimpl(tryfirst=True)\ndef promod_startup(app):\n    ORDER.append('one')\n",
        "two": "@hookimpl\ndef promod_startup(app):\n    ORDER.append('two')\n    1 / 0\n",
        "three": "@hookimpl(trylast=True)\ndef promod_startup():\n    ORDER.append('three')\n",
    }
    host = _load(tmp_path, plugins)
    with capture_logs() as logs:
        host.startup(SimpleNamespace())
    assert ORDER == ["one", "two", "three"]
    [failed] = [e for e in logs if e["event"] == "plugin_hook_failed"]
    assert (failed["plugin"], failed["hook"]) == ("two", "promod_startup")
    assert "ZeroDivisionError" in failed["error"]


def test_register_hooks_follow_pluggy_order_and_a_raising_one_stops_the_start(
    tmp_path: Path,
) -> None:
    def commands(name: str, mark: str = "") -> str:
        return (
            f"@hookimpl{mark}\ndef promod_register_commands():\n"
            f"    return [type('C', (), {{'name': '{name}'}})()]\n"
        )

    host = _load(tmp_path, {"p1": commands("first", "(tryfirst=True)"), "p2": commands("second")})
    assert [(plugin, cmd.name) for plugin, cmd in host.commands] == [
        ("p1", "first"),
        ("p2", "second"),
    ]
    broken = "@hookimpl\ndef promod_register_channels():\n    raise ValueError('no')\n"
    with pytest.raises(PluginError, match="'broken' failed in promod_register_channels"):
        _load(tmp_path, {"broken": broken})


def test_trace_switch_logs_each_hook_call_without_argument_values(tmp_path: Path) -> None:
    campaign = SimpleNamespace(id="winback", code="SECRET-CODE-123")
    quiet = _load(tmp_path, PLUGINS)
    with capture_logs() as logs:
        quiet.eligibility_check({"id": "c1"}, campaign)
    assert not [e for e in logs if e["event"] == "plugin_trace"]

    traced = _load(tmp_path, PLUGINS, environ={TRACE_ENV: "1"})
    with capture_logs() as logs:
        traced.eligibility_check({"id": "c1"}, campaign)
    lines = [e["trace"] for e in logs if e["event"] == "plugin_trace"]
    text = "\n".join(lines)
    assert any(line.strip() == "promod_eligibility_check [hook]" for line in lines)
    assert "calls: d_first,c_plain,b_boom,a_last" in text
    assert "args: customer,campaign" in text
    assert "finish promod_eligibility_check --> d_first: str; b_boom: raised RuntimeError" in text
    assert "SECRET-CODE-123" not in text and "c1" not in text
