"""The codes commands end to end: promodctl -> a real AdminServer -> a real database."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from promod.app import App
from promod.ctl.main import main
from promod.plugins.host import PluginHost
from promod.store.database import Database
from tests.codepool.conftest import T0


async def ctl(socket_path: Path, *argv: str) -> int:
    code: int = await anyio.to_thread.run_sync(main, ["--socket", str(socket_path), *argv])
    return code


def last_json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


@pytest.mark.anyio
async def test_generate_stats_pools_revoke(
    socket_path: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["codes", "generate", "XMAS", "--count", "250", "--pattern", "XMAS-####-####"]
    assert await ctl(socket_path, *argv, "--expires", "30d", "--value", "5.00") == 0
    assert "generated 250 codes into pool XMAS" in capsys.readouterr().out
    row = await db.fetchone("SELECT min(code), max(expires_at), max(value_minor) FROM codes")
    assert row is not None and row[0].startswith("XMAS-") and row[1] == T0 + 30 * 86400
    assert row[2] == 500

    assert await ctl(socket_path, "codes", "configure", "XMAS", "--low", "100") == 0
    capsys.readouterr()
    assert await ctl(socket_path, "--json", "codes", "pools") == 0
    pools = last_json(capsys)
    assert pools == [
        {
            "pool": "XMAS",
            "series": "XMAS",
            "available": 250,
            "loaded": 250,
            "low_absolute": 100,
            "low_percent": None,
            "threshold": 100,
            "low": False,
        }
    ]

    code = row[0]
    assert await ctl(socket_path, "codes", "revoke", "XMAS", code) == 0
    assert "revoked 1 code(s)" in capsys.readouterr().out
    assert await ctl(socket_path, "codes", "revoke", "XMAS", "--all-unassigned") == 0
    assert "revoked 249 code(s)" in capsys.readouterr().out
    assert await ctl(socket_path, "--json", "codes", "stats", "XMAS") == 0
    stats = last_json(capsys)
    assert isinstance(stats, dict)
    assert stats["counts"]["revoked"] == 250 and stats["available"] == 0 and stats["low"] is True
    assert await ctl(socket_path, "codes", "stats", "XMAS") == 0
    assert "revoked" in capsys.readouterr().out
    # The audit log has the commands, never the code.
    audit = await db.fetchall("SELECT command, args FROM audit_log ORDER BY id")
    assert [a[0] for a in audit] == [
        "codes.generate",
        "codes.configure",
        "codes.revoke",
        "codes.revoke",
    ]
    assert all(code not in a[1] for a in audit)


@pytest.mark.anyio
async def test_impossible_generation_is_refused_with_numbers(
    socket_path: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["codes", "generate", "TINY", "--count", "200", "--pattern", "##", "--charset", "AB"]
    assert await ctl(socket_path, *argv) == 1
    err = capsys.readouterr().err
    assert "2^2 = 4" in err and "200" in err
    assert (await db.fetchone("SELECT count(*) FROM codes"))[0] == 0  # type: ignore[index]
    assert await ctl(socket_path, "codes", "stats", "NOPE") == 1
    assert "not_found" in capsys.readouterr().err


@pytest.mark.anyio
async def test_generate_in_parts(
    socket_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("promod.ctl.codes.GENERATE_PART", 300)
    assert await ctl(socket_path, "codes", "generate", "P", "--count", "1000") == 0
    row = await db.fetchone("SELECT count(DISTINCT code) FROM codes WHERE pool_id = 1")
    assert row is not None and row[0] == 1000


@pytest.mark.anyio
async def test_import_csv_all_or_nothing(
    socket_path: Path, db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "codes.csv"
    bad.write_text(
        "code,expiry,value\n"
        "AAA111,2026-12-31,5.00\n"
        "BBB222,,\n"
        "CCC333,tomorrow,1.00\n"  # line 4: bad expiry
        "AAA111,,\n"  # line 5: duplicate of line 2
        "DDD444,2026-12-31T10:00:00,\n"  # line 6: no zone
        "EEE555,,1.234\n"  # line 7: too many decimals
        "\n"
        "FFF666,2026-12-31T10:00:00+01:00,2\n",
        encoding="utf-8",
    )
    assert await ctl(socket_path, "codes", "import", "PARTNER", str(bad)) == 1
    err = capsys.readouterr().err
    for line in (4, 5, 6, 7):
        assert f"line {line}:" in err
    assert "line 5: duplicate code (first on line 2)" in err
    assert "AAA111" not in err
    assert (await db.fetchone("SELECT count(*) FROM codes"))[0] == 0  # type: ignore[index]
    assert (await db.fetchone("SELECT count(*) FROM code_import_staging"))[0] == 0  # type: ignore[index]

    good = tmp_path / "good.csv"
    good.write_text(
        "AAA111,2026-12-31,5.00\nBBB222\nFFF666,2026-12-31T10:00:00+01:00,2\n", encoding="utf-8"
    )
    assert await ctl(socket_path, "codes", "import", "PARTNER", str(good)) == 0
    assert "imported 3 codes into pool PARTNER" in capsys.readouterr().out
    rows = await db.fetchall("SELECT code, expires_at, value_minor FROM codes ORDER BY code")
    assert [tuple(r) for r in rows] == [
        ("AAA111", 1798761600.0, 500),  # through 2026-12-31 UTC
        ("BBB222", None, None),
        ("FFF666", 1798707600.0, 200),
    ]
    # Importing a code that is already in the series is refused with its line.
    again = tmp_path / "again.txt"
    again.write_text("ZZZ999\nBBB222\n", encoding="utf-8")
    assert await ctl(socket_path, "codes", "import", "PARTNER", str(again)) == 1
    assert "line 2: code already in series" in capsys.readouterr().err


@pytest.mark.anyio
async def test_import_lines_with_a_series(
    socket_path: Path, db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "codes.txt"
    path.write_text("".join(f"CODE{i:05d}\n" for i in range(12_000)), encoding="utf-8")
    argv = ["codes", "import", "A", str(path), "--series", "S"]
    assert await ctl(socket_path, *argv) == 0
    assert "imported 12,000 codes" in capsys.readouterr().out
    # Pool B of the same series cannot take them again; pool C of its own series can.
    assert await ctl(socket_path, "codes", "import", "B", str(path), "--series", "S") == 1
    assert "... and 11900 more invalid rows" in capsys.readouterr().err
    assert await ctl(socket_path, "codes", "import", "C", str(path)) == 0


@pytest.mark.anyio
async def test_redeem_command(
    socket_path: Path, app: App, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await ctl(socket_path, "codes", "generate", "S", "--count", "1", "--max-uses", "2") == 0
    row = await db.fetchone("SELECT code FROM codes")
    assert row is not None
    capsys.readouterr()
    assert await ctl(socket_path, "codes", "redeem", row[0], "c1", "--ip", "192.0.2.1") == 0
    assert capsys.readouterr().out.strip() == "redeemed"
    assert await ctl(socket_path, "codes", "redeem", "NOPE", "c1") == 0
    assert capsys.readouterr().out.strip() == "not redeemed: invalid_code"
    assert await ctl(socket_path, "codes", "redeem", "NOPE", "c1", "--ip", "x") == 1
    audit = await db.fetchall("SELECT args FROM audit_log WHERE command = 'codes.redeem'")
    assert audit and all(row[0] not in a[0] for a in audit)


def test_builtin_plugin_registers_provider_and_commands() -> None:
    host = PluginHost.load(entry_points=False)
    assert host.reward_providers["code_pool"].transactional is True
    names = {getattr(cmd, "name", None) for _plugin, cmd in host.commands}
    assert {"codes.generate", "codes.import.begin", "codes.stats", "codes.redeem"} <= names
