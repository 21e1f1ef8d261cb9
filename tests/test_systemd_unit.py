"""Checks of systemd/promod.service, .sysusers and .tmpfiles with systemd's own tools."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "systemd"
UNIT = SYSTEMD_DIR / "promod.service"
SYSUSERS = SYSTEMD_DIR / "promod.sysusers"
TMPFILES = SYSTEMD_DIR / "promod.tmpfiles"
INSTALLED_PROMOD = "/opt/promod/venv/bin/promod"
MAX_EXPOSURE = 2.0
DEFAULT_SHUTDOWN_TIMEOUT = 30.0

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed")


def unit_settings() -> dict[str, list[str]]:
    """Every Key=Value of the unit, by key, in order (keys may repeat)."""
    settings: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a setting: {raw!r}"
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return int(match[1]) * (60 if match[2] == "min" else 1)


def an_existing_promod() -> str:
    """A promod executable on this machine for ExecStart=."""
    if os.access(INSTALLED_PROMOD, os.X_OK):
        return INSTALLED_PROMOD
    beside_python = Path(sys.executable).parent / "promod"
    if os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which("promod")
    return found if found else sys.executable


def test_unit_is_a_notify_service_with_watchdog_reload_and_restart() -> None:
    s = unit_settings()
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert seconds(s["WatchdogSec"][0]) > 0
    assert s["Restart"] == ["on-failure"]
    assert s["ExecStart"] == [f"{INSTALLED_PROMOD} run --config /etc/promod/promod.toml"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert seconds(s["TimeoutStopSec"][0]) > DEFAULT_SHUTDOWN_TIMEOUT
    assert s["User"] == ["promod"]
    assert s["Group"] == ["promod"]
    assert s["StateDirectory"] == ["promod"]
    assert s["RuntimeDirectory"] == ["promod"]
    assert s["ConfigurationDirectory"] == ["promod"]


def test_unit_sandbox_still_lets_the_daemon_do_its_job() -> None:
    s = unit_settings()
    families = " ".join(s["RestrictAddressFamilies"]).split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
    assert not any(f.startswith("~") for f in families)
    assert "IPAddressDeny" not in s
    assert s.get("PrivateNetwork", ["no"]) == ["no"]
    # A user namespace would show every admin-socket peer as "nobody".
    assert s.get("PrivateUsers", ["no"]) == ["no"]


def verifiable_copy(tmp_path: Path) -> Path:
    unit = tmp_path / "promod.service"
    text = UNIT.read_text()
    unit.write_text(text.replace(INSTALLED_PROMOD, an_existing_promod()))
    return unit


@needs_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    unit = verifiable_copy(tmp_path)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    complaints = [line for line in output.splitlines() if "promod" in line]
    assert complaints == []


@needs_analyze
def test_security_exposure_is_at_most_two(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    assert match, output
    assert float(match[1]) <= MAX_EXPOSURE, output
    assert "Unknown key" not in output


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers absent")
def test_sysusers_creates_the_daemon_user_and_role_groups(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", "-"],
        input=SYSUSERS.read_text(),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    users = {
        line.split(":")[0]: line for line in (tmp_path / "etc/passwd").read_text().splitlines()
    }
    groups = {line.split(":")[0] for line in (tmp_path / "etc/group").read_text().splitlines()}
    assert "promod" in users
    assert ":/var/lib/promod:" in users["promod"]
    assert {"promod", "promod-ops", "promod-admin"} <= groups

    if shutil.which("systemd-tmpfiles") is None or os.geteuid() != 0:
        return
    subprocess.run(
        ["systemd-tmpfiles", f"--root={tmp_path}", "--create", "-"],
        input=TMPFILES.read_text(),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    etc = (tmp_path / "etc/promod").stat()
    assert etc.st_mode & 0o777 == 0o750
    assert etc.st_uid == 0
    promod_gid = int(users["promod"].split(":")[3])
    assert etc.st_gid == promod_gid
    backups = (tmp_path / "var/backups/promod").stat()
    assert backups.st_gid == promod_gid


def test_unit_sets_a_descriptor_limit_well_above_the_default_1024() -> None:
    # The daemon shares the limit out (promod.limits); 1,024 is systemd's default soft limit.
    values = unit_settings()["LimitNOFILE"]
    assert len(values) == 1
    assert int(values[0]) >= 16384
