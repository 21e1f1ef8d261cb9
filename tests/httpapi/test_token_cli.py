"""``promod token create``: a fresh token once, and config lines that load and match it."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import pytest

from promod.cli import main
from promod.config import parse_config


def test_token_create_prints_the_token_and_loadable_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["token", "create", "backend", "--scopes", "events:write, read"]) == 0
    out = capsys.readouterr().out
    token = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("token:"))
    entry = out[out.index("[[http.tokens]]") :]
    config = parse_config(tomllib.loads(entry), Path("/x/promod.toml"))
    (configured,) = config.http.tokens
    assert configured.name == "backend"
    assert configured.scopes == frozenset({"events:write", "read"})
    assert configured.sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert token not in entry

    assert main(["token", "create", "backend", "--scopes", "read"]) == 0
    assert token not in capsys.readouterr().out  # a new one each time


@pytest.mark.parametrize(
    ("name", "scopes"), [("backend", "read,admin"), ("backend", ","), ("bad name", "read")]
)
def test_token_create_refuses_bad_input(
    capsys: pytest.CaptureFixture[str], name: str, scopes: str
) -> None:
    assert main(["token", "create", name, "--scopes", scopes]) == 2
    assert "promod:" in capsys.readouterr().err
