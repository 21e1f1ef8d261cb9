"""The store seam: Database.run hands store code a Transaction over SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promod.store.database import Database
from promod.store.seam import Transaction

pytestmark = pytest.mark.anyio


async def test_run_hands_a_transaction_with_named_parameters_and_dialect(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "s.db") as db:

        def write(tx: Transaction) -> int:
            assert isinstance(tx, Transaction)
            tx.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
            tx.executemany(
                "INSERT INTO t (k, n) VALUES (:k, :n)", [{"k": f"k{i}", "n": i} for i in range(5)]
            )
            tx.execute(tx.dialect.insert_ignore("t", ["k", "n"], ["k"]), {"k": "k1", "n": 99})
            tx.execute(
                tx.dialect.upsert("t", ["k", "n"], ["k"], {"n": "t.n + excluded.n"}),
                {"k": "k2", "n": 10},
            )
            return tx.execute("UPDATE t SET n = n WHERE n >= :lo", {"lo": 3})

        assert await db.run(write) == 3

        def read(tx: Transaction) -> tuple[object, ...]:
            one = tx.fetch_one("SELECT n FROM t WHERE k = :k", {"k": "k1"})
            assert one is not None
            picked = tx.fetch_all(
                f"SELECT k FROM t WHERE {tx.dialect.in_array('k', 'ks')} ORDER BY k",
                {"ks": tx.dialect.array(["k0", "k4", "nope"])},
            )
            streamed = [r["n"] for r in tx.iterate("SELECT n FROM t ORDER BY k", size=2)]
            return (
                one["n"],
                [r["k"] for r in picked],
                streamed,
                tx.fetch_value("SELECT n FROM t WHERE k = 'x'", default=-1),
                tx.fetch_value(f"SELECT {tx.dialect.greatest('1', '7', '3')}"),
            )

        assert await db.run(read, write=False) == (1, ["k0", "k4"], [0, 1, 12, 3, 4], -1, 7)


async def test_an_exception_rolls_the_whole_store_function_back(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "s.db") as db:
        await db.run(lambda tx: tx.execute("CREATE TABLE t (n INTEGER)"))

        def fail(tx: Transaction) -> None:
            tx.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await db.run(fail)
        assert await db.run(lambda tx: tx.fetch_value("SELECT count(*) FROM t")) == 0


async def test_constraint_errors_are_the_seams_own(tmp_path: Path) -> None:
    from promod.store.seam import ConstraintError, UniqueViolation

    async with await Database.open(tmp_path / "s.db") as db:
        await db.run(lambda tx: tx.execute("CREATE TABLE t (k TEXT PRIMARY KEY CHECK (k <> ''))"))
        await db.run(lambda tx: tx.execute("INSERT INTO t VALUES ('a')"))
        with pytest.raises(UniqueViolation):
            await db.run(lambda tx: tx.execute("INSERT INTO t VALUES ('a')"))
        with pytest.raises(ConstraintError):
            await db.run(lambda tx: tx.executemany("INSERT INTO t VALUES (?)", [("",)]))


async def test_savepoints_returning_rowcounts_and_missing_tables(tmp_path: Path) -> None:
    from promod.store.seam import SchemaMismatch

    async with await Database.open(tmp_path / "s.db") as db:
        await db.run(
            lambda tx: tx.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE)")
        )

        def write(tx: Transaction) -> tuple[int, int, int]:
            first = tx.fetch_value("INSERT INTO t (k) VALUES (:k) RETURNING id", {"k": "a"})
            with pytest.raises(RuntimeError), tx.savepoint("part"):
                tx.execute("INSERT INTO t (k) VALUES ('gone')")
                raise RuntimeError("only this part")
            with tx.savepoint("kept"):
                tx.execute("INSERT INTO t (k) VALUES ('b')")
            changed = tx.executemany(
                tx.dialect.insert_ignore("t", ["k"], ["k"]), [{"k": k} for k in "abcd"]
            )
            return int(first), changed, int(tx.fetch_value("SELECT count(*) FROM t"))

        # The RETURNING statement is finished before COMMIT; savepoints undo only theirs.
        assert await db.run(write) == (1, 2, 4)
        assert await db.run(
            lambda tx: [r[0] for r in tx.fetch_all("SELECT k FROM t ORDER BY k")], write=False
        ) == ["a", "b", "c", "d"]
        with pytest.raises(SchemaMismatch, match="no such table"):
            await db.run(lambda tx: tx.fetch_all("SELECT 1 FROM nowhere"), write=False)
        with pytest.raises(ValueError):
            await db.run(lambda tx: tx.savepoint("x; DROP TABLE t").__enter__())


def test_store_functions_accept_a_raw_connection_while_callers_move(tmp_path: Path) -> None:
    import sqlite3

    from promod.store.seam import SqliteTransaction, as_tx, legacy_connection

    conn = sqlite3.connect(tmp_path / "raw.db")
    tx = as_tx(conn)
    assert isinstance(tx, SqliteTransaction) and as_tx(tx) is tx
    assert legacy_connection(tx) is conn and legacy_connection(conn) is conn
    assert tx.fetch_value("SELECT :a + 1", {"a": 1}) == 2


async def test_dialect_json_merge_iso_time_and_sequence_key(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "s.db") as db:

        def use(tx: Transaction) -> tuple[object, object, list[int]]:
            d = tx.dialect
            tx.execute(f"CREATE TABLE q ({d.sequence_key('seq')}, v TEXT)")
            tx.executemany("INSERT INTO q (v) VALUES (:v)", [{"v": "a"}, {"v": "b"}])
            merged = tx.fetch_value(
                f"SELECT {d.json_merge(':old', ':new')}",
                {"old": '{"a": 1, "b": 2}', "new": '{"b": 3, "c": 4}'},
            )
            iso = tx.fetch_value(f"SELECT {d.iso_time(':t')}", {"t": 86_400})
            return merged, iso, [r[0] for r in tx.fetch_all("SELECT seq FROM q ORDER BY seq")]

        merged, iso, seqs = await db.run(use)
        assert json.loads(str(merged)) == {"a": 1, "b": 3, "c": 4}
        assert iso == "1970-01-02T00:00:00Z"
        assert seqs == [1, 2]
