"""The customer commands end to end: promodctl -> a real AdminServer -> a real database."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from promod.ctl.client import AdminClient
from promod.ctl.imports import upload_file
from promod.ctl.main import main
from promod.store.database import Database
from tests.customers.conftest import CustomerApp


async def ctl(socket_path: Path, *argv: str) -> int:
    code: int = await anyio.to_thread.run_sync(main, ["--socket", str(socket_path), *argv])
    return code


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


async def audit_commands(db: Database) -> list[tuple[str, str]]:
    rows = await db.fetchall("SELECT command, outcome FROM audit_log ORDER BY id")
    return [(r[0], r[1]) for r in rows]


@pytest.mark.anyio
async def test_csv_import_then_show(
    socket_path: Path, db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = write(
        tmp_path / "customers.csv",
        "\ufeffid,email,timezone,tags,consents,attr.ltv,attr.vip\n"
        "c1,a@example.org,Europe/Berlin,vip;bonus_interest,marketing_email,120.50,true\n"
        'c2,,,"",,7,false\n',
    )
    assert await ctl(socket_path, "customers", "import", str(csv_file)) == 0
    assert capsys.readouterr().out.strip() == "imported 2 customers (2 created, 0 updated)"
    assert await ctl(socket_path, "--json", "customers", "show", "c1") == 0
    shown: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert shown["email"] == "a@example.org"
    assert shown["timezone"] == "Europe/Berlin"
    assert shown["tags"] == ["bonus_interest", "vip"]
    assert shown["attributes"] == {"ltv": "120.50", "vip": True}
    assert shown["consents"]["marketing_email"]["granted"] is True
    assert shown["consents"]["marketing_email"]["source"] == "import"
    assert await ctl(socket_path, "customers", "show", "c1") == 0
    human = capsys.readouterr().out
    assert "marketing_email: granted (import," in human
    assert "ltv: 120.50" in human
    assert await ctl(socket_path, "customers", "show", "nobody") == 1
    assert "promodctl: not_found: no customer 'nobody'" in capsys.readouterr().err
    # begin and commit are audited, the chunks (customer data) are not
    assert await audit_commands(db) == [
        ("customers.import.begin", "ok"),
        ("customers.import.commit", "ok"),
    ]


@pytest.mark.anyio
async def test_bad_rows_are_listed_by_line_and_nothing_is_imported(
    socket_path: Path, db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [json.dumps({"id": f"c{n}"}) for n in range(1, 7)]
    lines[2] = json.dumps({"id": "c3", "timezone": "Nowhere/City"})
    lines[4] = "{oops"
    jsonl = write(
        tmp_path / "customers.jsonl", "\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:])
    )
    assert await ctl(socket_path, "customers", "import", str(jsonl)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "line 3: timezone: 'Nowhere/City' is not an IANA time zone"
    assert err[1].startswith("line 6: invalid JSON")
    assert err[2].startswith("promodctl: invalid_args: 2 invalid rows, first at line 3")
    assert await db.fetchone("SELECT 1 FROM customers") is None
    assert await db.fetchone("SELECT 1 FROM import_staging") is None


@pytest.mark.anyio
async def test_csv_with_unknown_column_fails_at_line_1(
    socket_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = write(tmp_path / "c.csv", "id,phone\nc1,123\n")
    assert await ctl(socket_path, "customers", "import", str(csv_file)) == 1
    assert capsys.readouterr().err.startswith("line 1: unknown column 'phone'")


@pytest.mark.anyio
async def test_csv_row_with_extra_fields_is_reported(
    socket_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = write(tmp_path / "c.txt", 'id,email\nc1,\nc2,"x@example.org",surplus\nc3\n')
    assert await ctl(socket_path, "customers", "import", str(csv_file)) == 2
    assert "--format" in capsys.readouterr().err
    assert await ctl(socket_path, "customers", "import", "--format", "csv", str(csv_file)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [
        "line 3: the row has more fields than the header",
        "line 4: the row has fewer fields than the header",
    ]


@pytest.mark.anyio
async def test_events_import_skips_duplicates(
    socket_path: Path, db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [
        {
            "id": "e1",
            "customer_id": "c1",
            "name": "purchase",
            "ts": "2026-11-20T18:03:00Z",
            "properties": {"amount": "59.90"},
        },
        {"id": "e1", "customer_id": "c1", "name": "purchase", "ts": "2026-11-20T18:03:00Z"},
        {"customer_id": "c1", "name": "login", "ts": "2026-11-21T08:00:00+01:00"},
    ]
    path = write(tmp_path / "events.jsonl", "".join(json.dumps(e) + "\n" for e in events))
    assert await ctl(socket_path, "events", "import", str(path)) == 0
    assert capsys.readouterr().out.strip() == "imported 2 events (1 skipped as already stored)"
    assert await ctl(socket_path, "--json", "events", "import", str(path)) == 0
    # an event without an id cannot be recognised again: it is stored twice
    assert json.loads(capsys.readouterr().out) == {"imported": 1, "skipped": 2}
    rows = await db.fetchall("SELECT event_id, name, ts, properties FROM events ORDER BY seq")
    assert [tuple(r) for r in rows] == [
        ("e1", "purchase", 1795197780, '{"amount":"59.90"}'),
        (None, "login", 1795244400, "{}"),
        (None, "login", 1795244400, "{}"),
    ]


@pytest.mark.anyio
async def test_import_spanning_many_chunks(
    socket_path: Path, db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "many.jsonl"
    with path.open("w") as fh:
        for n in range(12_001):
            fh.write(json.dumps({"id": f"c{n}", "tags": ["t"]}) + "\n")
    assert await ctl(socket_path, "--json", "customers", "import", str(path)) == 0
    assert json.loads(capsys.readouterr().out) == {
        "imported": 12_001,
        "created": 12_001,
        "updated": 0,
    }
    row = await db.fetchone("SELECT count(*) FROM customer_tags")
    assert row is not None and row[0] == 12_001


class TestViewer:
    @pytest.fixture
    def role(self) -> str:
        return "viewer"

    @pytest.mark.anyio
    async def test_viewer_may_show_but_not_import(
        self,
        socket_path: Path,
        app: CustomerApp,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        path = write(tmp_path / "c.jsonl", '{"id": "c1"}\n')
        assert await ctl(socket_path, "customers", "import", str(path)) == 1
        assert "promodctl: forbidden: customers.import.begin needs role operator" in (
            capsys.readouterr().err
        )
        assert await audit_commands(app.db) == [("customers.import.begin", "refused")]
        assert await ctl(socket_path, "customers", "show", "c1") == 1
        assert "not_found" in capsys.readouterr().err


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.anyio
async def test_progress_bar_counts_bytes_on_a_terminal(socket_path: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "c.jsonl", "".join(f'{{"id": "c{n}"}}\n' for n in range(100)))
    tty, pipe = FakeTty(), io.StringIO()

    def upload(stream: io.StringIO) -> Any:
        with AdminClient(socket_path) as client:
            return upload_file(client, "customers", path, progress=stream)

    assert (await anyio.to_thread.run_sync(upload, tty))["created"] == 100
    size = path.stat().st_size
    assert f"customers import [{'#' * 30}] {size}/{size} 100%" in tty.getvalue()
    assert (await anyio.to_thread.run_sync(upload, pipe))["updated"] == 100
    assert pipe.getvalue() == ""


@pytest.mark.anyio
async def test_a_lone_surrogate_in_a_jsonl_line_is_an_import_error_with_its_line(
    socket_path: Path, db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # "\ud800" is valid JSON but no valid text: refused where it enters, by line.
    jsonl = write(tmp_path / "c.jsonl", '{"id": "c1"}\n{"id": "z\\ud800"}\n{"id": "c3"}\n')
    assert await ctl(socket_path, "customers", "import", str(jsonl)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        "line 2: id: text holds a lone surrogate (such as \\ud800), which is not valid Unicode"
    )
    assert "internal" not in "\n".join(err)
    assert await db.fetchone("SELECT 1 FROM customers") is None


class _ReadRecorder(io.BytesIO):
    """A file that remembers the longest piece any read handed out."""

    longest = 0

    def _seen(self, data: bytes) -> bytes:
        self.longest = max(self.longest, len(data))
        return data

    def readline(self, size: int | None = -1) -> bytes:
        return self._seen(super().readline(-1 if size is None else size))

    def __next__(self) -> bytes:
        return self._seen(super().__next__())


def test_an_overlong_jsonl_line_is_reported_without_being_held_in_memory() -> None:
    from promod.ctl.imports import MAX_ROW_BYTES, iter_jsonl_rows

    huge = b'{"id": "' + b"x" * (16 * MAX_ROW_BYTES) + b'"}\n'
    fh = _ReadRecorder(b'{"id": "c1"}\n' + huge + b'{"id": "c3"}\n')
    rows = [row for row, _ in iter_jsonl_rows(fh)]
    assert rows[0] == {"line": 1, "text": '{"id": "c1"}'}
    assert rows[1]["line"] == 2
    assert rows[1]["error"].startswith(f"line too long to import ({len(huge)} bytes")
    assert rows[2] == {"line": 3, "text": '{"id": "c3"}'}
    assert fh.longest <= MAX_ROW_BYTES + 1


def test_an_overlong_csv_line_is_reported_without_being_held_in_memory() -> None:
    from promod.ctl.imports import MAX_ROW_BYTES, iter_csv_rows

    fh = _ReadRecorder(b"id,email\nc1,\nc2," + b"x" * (16 * MAX_ROW_BYTES) + b"\nc4,\n")
    header, rows = iter_csv_rows(fh)
    found = [row for row, _ in rows]
    assert header == ["id", "email"]
    assert found[0] == {"line": 2, "row": {"id": "c1", "email": ""}}
    assert found[1]["line"] == 3
    assert "line too long to import" in found[1]["error"]
    assert fh.longest <= MAX_ROW_BYTES + 1


@pytest.mark.anyio
async def test_promodctl_names_the_overlong_line_and_imports_nothing(
    socket_path: Path, db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("wb") as fh:
        fh.write(b'{"id": "c1"}\n{"id": "')
        fh.write(b"y" * (8 * 1024 * 1024))
        fh.write(b'"}\n{"id": "c3"}\n')
    assert await ctl(socket_path, "customers", "import", str(path)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("line 2: line too long to import")
    assert await db.fetchone("SELECT 1 FROM customers") is None
