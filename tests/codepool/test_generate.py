"""Code generation: shapes, the unbiased byte table, the keyspace refusal."""

from __future__ import annotations

from collections import Counter

import pytest

from promod.codepool.generate import DEFAULT_CHARSET, CodeSpec, KeyspaceError, check_keyspace
from promod.codepool.store import ensure_pool, generate_into, stats_sync
from promod.store.database import Database
from promod.store.seam import Transaction
from tests.codepool.conftest import T0, fill


def test_default_charset_has_no_lookalikes() -> None:
    assert not set("0O1IL") & set(DEFAULT_CHARSET)
    assert len(DEFAULT_CHARSET) == 31
    codes = CodeSpec.build().generate(200)
    assert all(len(c) == 10 and set(c) <= set(DEFAULT_CHARSET) for c in codes)


def test_pattern_prefix_postfix() -> None:
    spec = CodeSpec.build(pattern="XMAS-####-##", prefix="P.", postfix=".Z", charset="AB")
    codes = spec.generate(50)
    for code in codes:
        assert code.startswith("P.XMAS-") and code.endswith(".Z")
        body = code[len("P.XMAS-") : -2]
        assert body[4] == "-" and set(body.replace("-", "")) <= {"A", "B"}
    assert spec.keyspace == 2**6
    assert CodeSpec.build(length=4, charset="ABC").keyspace == 81


@pytest.mark.parametrize(
    "kwargs",
    [
        {"charset": "AAB"},
        {"charset": "A"},
        {"pattern": "XMAS"},
        {"pattern": "##", "length": 4},
        {"prefix": "a b"},
        {"length": 0},
        {"charset": "AB#"},
    ],
)
def test_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CodeSpec.build(**kwargs)  # type: ignore[arg-type]


def test_characters_are_unbiased() -> None:
    # 256 % 3 == 1 and 256 % 7 == 4: a plain modulo would favour the first letters.
    for charset in ("ABC", "ABCDEFG"):
        text = CodeSpec.build(charset=charset, length=1).random_text(140_000)
        counts = Counter(text)
        expected = len(text) / len(charset)
        chi2 = sum((counts[c] - expected) ** 2 / expected for c in charset)
        assert chi2 < 25, (charset, counts)


def test_keyspace_refusal_has_the_numbers() -> None:
    spec = CodeSpec.build(pattern="##", charset="ABCDEFGHIJ")
    check_keyspace(spec, 50, 0)
    with pytest.raises(KeyspaceError) as err:
        check_keyspace(spec, 40, 20)
    message = str(err.value)
    assert "40" in message and "10^2 = 100" in message and "20" in message and "50%" in message


@pytest.mark.anyio
async def test_refused_before_anything_is_written(db: Database) -> None:
    spec = CodeSpec.build(pattern="###", charset="0123456789")
    with pytest.raises(KeyspaceError):
        await fill(db, "P", 501, spec=spec)
    assert (await db.fetchone("SELECT count(*) FROM codes"))[0] == 0  # type: ignore[index]


@pytest.mark.anyio
async def test_unique_across_pools_of_a_series(db: Database) -> None:
    spec = CodeSpec.build(pattern="###", charset="0123456789")
    await fill(db, "A", 300, series="S", spec=spec)
    await fill(db, "B", 200, series="S", spec=spec)
    rows = await db.fetchall("SELECT code FROM codes")
    assert len(rows) == 500 and len({r[0] for r in rows}) == 500
    # The series is now at 50% of its keyspace: one more is refused for either pool.
    with pytest.raises(KeyspaceError):
        await fill(db, "B", 1, spec=spec)
    # Another series has its own keyspace.
    await fill(db, "C", 10, series="T", spec=spec)


@pytest.mark.anyio
async def test_generate_100k_quickly(db: Database) -> None:
    await fill(db, "BIG", 100_000, spec=CodeSpec.build(pattern="BIG-#####-#####"))

    def check(tx: Transaction) -> dict[str, object]:
        return stats_sync(tx, "BIG", T0)

    stats = await db.run(check)
    assert stats["available"] == 100_000 and stats["counts"]["available"] == 100_000  # type: ignore[index]
    distinct = await db.fetchone("SELECT count(DISTINCT code) FROM codes")
    assert distinct is not None and distinct[0] == 100_000


@pytest.mark.anyio
async def test_series_of_a_loaded_pool_cannot_change(db: Database) -> None:
    await fill(db, "A", 5)

    def change(tx: Transaction) -> None:
        ensure_pool(tx, "A", now=T0, series="OTHER")

    with pytest.raises(Exception, match="cannot change"):
        await db.run(change)

    def regenerate(tx: Transaction) -> int:
        pool = ensure_pool(tx, "A", now=T0)
        return generate_into(tx, pool, CodeSpec.build(), 5, now=T0)

    assert await db.run(regenerate) == 5
