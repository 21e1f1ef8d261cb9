"""`promod init DIR`: the sample config and first-run directory (promod.initdir)."""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import stat
import tomllib
from pathlib import Path

import pytest

from promod.config import (
    ConfigError,
    DaemonConfig,
    FraudConfig,
    LogConfig,
    SupervisorConfig,
    load_config,
)
from promod.initdir import init_directory, render_sample_config, sample_template

# Every table header of DESIGN §11.
DESIGN_SECTIONS = [
    "[daemon]",
    "[supervisor]",
    "[log]",
    "[store]",
    "[admin.roles]",
    "[http]",
    "[[http.tokens]]",
    "[plugins]",
    "[channels.mail]",
    "[channels.backend]",
    "[webhooks]",
    "[alerts]",
    "[notify]",
    "[policy]",
    "[policy.budgets.wallet_points]",
    "[fraud]",
    "[ledger]",
    "[clearance]",
    "[crm.main]",
]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_a_config_that_loads_with_everything_under_dir(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    config_path = init_directory(target)
    assert config_path == target / "promod.toml"
    config = load_config(config_path)
    assert config.daemon.state_dir == target / "state"
    assert config.store.path == target / "state" / "promod.db"
    assert config.daemon.admin_socket == target / "admin.sock"
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8470)
    assert config.channels["mail"].options["host"] == "localhost"
    assert config.channels["backend"].options["url"].startswith("http://127.0.0.1:")
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert me in config.admin.roles["admin"].users


def test_init_creates_the_state_dir_and_private_files(tmp_path: Path) -> None:
    config_path = init_directory(tmp_path)
    assert (tmp_path / "state").is_dir()
    assert mode(tmp_path / "state") == 0o750
    assert mode(config_path) == 0o600
    assert mode(tmp_path / "http-token") == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_http_token_file_matches_the_stored_hash(tmp_path: Path) -> None:
    config = load_config(init_directory(tmp_path))
    token = (tmp_path / "http-token").read_text().strip()
    (stored,) = config.http.tokens
    assert stored.sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (tmp_path / "promod.toml").read_text()


def test_init_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    config_path = init_directory(tmp_path)
    config_path.write_text("# mine\n")
    with pytest.raises(FileExistsError, match="--force"):
        init_directory(tmp_path)
    assert config_path.read_text() == "# mine\n"
    (tmp_path / "state" / "promod.db").write_text("data")
    init_directory(tmp_path, force=True)
    load_config(config_path)
    assert (tmp_path / "state" / "promod.db").read_text() == "data"


def test_init_writes_nothing_when_the_socket_path_cannot_work(tmp_path: Path) -> None:
    target = tmp_path / ("d" * 110)
    with pytest.raises(ConfigError, match=r"daemon\.admin_socket"):
        init_directory(target)
    assert not target.exists()


def test_sample_has_every_design_section_in_order() -> None:
    text = sample_template()
    headers = [line for line in text.splitlines() if line.startswith("[")]
    assert headers == DESIGN_SECTIONS


def test_sample_is_commented_in_every_section(tmp_path: Path) -> None:
    lines = render_sample_config(tmp_path).splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("[")]
    for begin, end in zip(starts, [*starts[1:], len(lines)], strict=True):
        # A comment right above the header or inside the section explains it.
        block = lines[begin - 1 : end]
        assert any(line.lstrip().startswith("#") for line in block), lines[begin]


@pytest.mark.parametrize("section", [DaemonConfig, SupervisorConfig, LogConfig, FraudConfig])
def test_sample_sets_every_key_of_the_simple_sections(
    tmp_path: Path, section: type[object]
) -> None:
    data = tomllib.loads(render_sample_config(tmp_path))
    name = {
        DaemonConfig: "daemon",
        SupervisorConfig: "supervisor",
        LogConfig: "log",
        FraudConfig: "fraud",
    }[section]
    fields = set(section.model_fields)  # type: ignore[attr-defined]
    assert set(data[name]) == fields


def test_sample_has_no_unfilled_placeholders(tmp_path: Path) -> None:
    text = render_sample_config(tmp_path, user="alice", webhook_secret="s")
    assert re.search(r"@[a-z0-9_]+@", text) is None
    assert 'users = ["alice"]' in text
