"""Admin commands of the code pools (``promodctl codes ...``).

``codes.generate``, ``codes.import.begin|chunk|commit|abort``, ``codes.stats``,
``codes.pools``, ``codes.configure``, ``codes.revoke``, ``codes.expire`` and
``codes.redeem``. Codes given as arguments are marked secret, so the audit log
never holds them in clear::

    -> {"cmd": "codes.generate",
        "args": {"pool": "XMAS25", "count": 1000, "pattern": "XMAS-####-####"}}
    <- {"ok": true, "result": {"pool": "XMAS25", "generated": 1000, "available": 1000, ...}}
    -> {"cmd": "codes.redeem",
        "args": {"code": "XMAS-7KQ2-MZ9P", "customer": "c42", "ip": "203.0.113.9"}}
    <- {"ok": true, "result": {"redeemed": true, "reason": null}}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from promod.admin.registry import ArgSpec, Command, CommandContext, CommandError, Role, command
from promod.codepool import imports as code_imports
from promod.codepool.generate import CodeSpec, KeyspaceError
from promod.codepool.redeem import redeem
from promod.codepool.store import (
    PoolError,
    configure_pool,
    ensure_pool,
    expire_sync,
    generate_into,
    list_pools,
    pool_counts,
    revoke_code,
    revoke_unassigned,
    stats_sync,
)
from promod.store.seam import Transaction
from promod.units import parse_duration, parse_money

__all__ = ["CODE_COMMANDS", "MAX_GENERATE"]

MAX_GENERATE = 1_000_000  # codes per generate call; promodctl sends chunks
T = TypeVar("T")


def _now(ctx: CommandContext) -> float:
    clock = getattr(ctx.app, "clock", None)
    return float(clock.now()) if clock is not None else time.time()


async def _run(ctx: CommandContext, fn: Callable[[Transaction], T], *, write: bool = True) -> T:
    try:
        result: T = await ctx.app.db.run(fn, write=write)
        return result
    except PoolError as exc:
        raise CommandError(exc.code, exc.message) from None
    except KeyspaceError as exc:
        raise CommandError("invalid_args", str(exc)) from None
    except code_imports.ImportRefused as exc:
        raise CommandError(
            "invalid_args", str(exc), {"errors": exc.errors, "error_count": exc.error_count}
        ) from None


def _expiry(text: str, now: float) -> float:
    """A duration from now (``30d``) or an ISO-8601 time/date."""
    try:
        return now + parse_duration(text)
    except ValueError:
        pass
    try:
        return code_imports.parse_expiry(text)
    except ValueError:
        raise CommandError(
            "invalid_args", f"expires {text!r}: a duration (30d) or an ISO-8601 time or date"
        ) from None


_POOL = {"pool": ArgSpec(str, required=True, help="pool name")}


@command(
    "codes.generate",
    role=Role.OPERATOR,
    mutating=True,
    summary="generate random unique codes into a pool (created if new)",
    usage="codes.generate POOL COUNT [length|pattern] [charset] [prefix] [postfix] [expires]",
    args={
        **_POOL,
        "count": ArgSpec(
            int, required=True, help=f"codes to add (at most {MAX_GENERATE:,} a call)"
        ),
        "total": ArgSpec(int, help="the whole request when sent in parts (keyspace check)"),
        "length": ArgSpec(int, help="random characters (default 10)"),
        "charset": ArgSpec(str, help="characters to draw from"),
        "pattern": ArgSpec(str, help="e.g. XMAS-####-#### (# = random character)"),
        "prefix": ArgSpec(str),
        "postfix": ArgSpec(str),
        "expires": ArgSpec(str, help="duration from now (30d) or ISO-8601 time/date"),
        "value": ArgSpec(str, help="decimal value of each code"),
        "max_uses": ArgSpec(int, help="shared coupon: redeemable this many times (default 1)"),
        "series": ArgSpec(str, help="series of a new pool (default: the pool's name)"),
    },
)
async def codes_generate(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    count = args["count"]
    if not 1 <= count <= MAX_GENERATE:
        raise CommandError("invalid_args", f"count must be 1 to {MAX_GENERATE:,}")
    try:
        spec = CodeSpec.build(
            length=args.get("length"),
            charset=args.get("charset"),
            pattern=args.get("pattern"),
            prefix=args.get("prefix", ""),
            postfix=args.get("postfix", ""),
        )
        value = parse_money(args["value"]) if "value" in args else None
    except ValueError as exc:
        raise CommandError("invalid_args", str(exc)) from None
    max_uses = args.get("max_uses", 1)
    if max_uses < 1:
        raise CommandError("invalid_args", "max_uses must be 1 or more")
    now = _now(ctx)
    expires_at = _expiry(args["expires"], now) if "expires" in args else None
    if expires_at is not None and expires_at <= now:
        raise CommandError("invalid_args", "expires is in the past")

    def work(tx: Transaction) -> dict[str, Any]:
        pool = ensure_pool(tx, args["pool"], now=now, series=args.get("series"))
        generate_into(
            tx,
            pool,
            spec,
            count,
            now=now,
            expires_at=expires_at,
            value_minor=value,
            max_uses=max_uses,
            check_total=args.get("total"),
        )
        available, loaded = pool_counts(tx, pool.id)
        return {
            "pool": pool.name,
            "series": pool.series,
            "generated": count,
            "available": available,
            "loaded": loaded,
            "keyspace": spec.describe_keyspace(),
        }

    return await _run(ctx, work)


_IMPORT_ID = {"import_id": ArgSpec(str, required=True, help="from codes.import.begin")}


def _session(args: dict[str, Any]) -> code_imports.ImportSession:
    session = code_imports.get_session(args["import_id"])
    if session is None:
        raise CommandError("not_found", f"no code import {args['import_id']!r} in progress")
    return session


@command(
    "codes.import.begin",
    role=Role.OPERATOR,
    mutating=True,
    summary="start an all-or-nothing code import into a pool",
    usage="codes.import.begin POOL [FORMAT lines|csv] [series] [max_uses]",
    args={
        **_POOL,
        "format": ArgSpec(str, help="lines (one code a line, default) or csv (code,expiry,value)"),
        "series": ArgSpec(str, help="series of a new pool (default: the pool's name)"),
        "max_uses": ArgSpec(int, help="shared coupons: redeemable this many times"),
    },
)
async def codes_import_begin(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    stale = code_imports.stale_sessions()
    try:
        session = code_imports.begin_import(
            args["pool"],
            args.get("format", "lines"),
            series=args.get("series"),
            max_uses=args.get("max_uses", 1),
        )
    except ValueError as exc:
        raise CommandError("invalid_args", str(exc)) from None

    if stale:
        await _run(ctx, partial(code_imports.drop_stale, import_ids=stale))
    return {"import_id": session.import_id}


@command(
    "codes.import.chunk",
    role=Role.OPERATOR,
    mutating=False,
    summary=f"validate and stage up to {code_imports.MAX_CHUNK_ROWS} rows of a code import",
    usage="codes.import.chunk IMPORT_ID ROWS",
    args={**_IMPORT_ID, "rows": ArgSpec(list, required=True, help='[{"line": N, "text": ...}]')},
)
async def codes_import_chunk(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    session = _session(args)
    rows = args["rows"]
    if len(rows) > code_imports.MAX_CHUNK_ROWS or not all(isinstance(r, dict) for r in rows):
        raise CommandError(
            "invalid_args", f"rows: at most {code_imports.MAX_CHUNK_ROWS} objects a chunk"
        )
    try:
        await _run(ctx, partial(code_imports.stage_rows, session=session, rows=rows))
    except ValueError as exc:
        raise CommandError("invalid_args", str(exc)) from None
    return session.status()


@command(
    "codes.import.commit",
    role=Role.OPERATOR,
    mutating=True,
    summary="write a code import in one transaction, or refuse it with its errors",
    usage="codes.import.commit IMPORT_ID",
    args=dict(_IMPORT_ID),
)
async def codes_import_commit(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    session = _session(args)
    now = _now(ctx)
    try:
        return await _run(ctx, partial(code_imports.commit_import, session=session, now=now))
    except CommandError:
        # The refusal rolled the commit back: drop the staged rows on their own.
        await _run(ctx, partial(code_imports.abort_import, session=session))
        raise


@command(
    "codes.import.abort",
    role=Role.OPERATOR,
    mutating=True,
    summary="discard a code import in progress",
    usage="codes.import.abort IMPORT_ID",
    args=dict(_IMPORT_ID),
)
async def codes_import_abort(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    session = _session(args)
    await _run(ctx, partial(code_imports.abort_import, session=session))
    return {"import_id": session.import_id, "aborted": True}


@command(
    "codes.stats",
    role=Role.VIEWER,
    mutating=False,
    summary="codes per state, burn rate over the last day, projected run-out",
    usage="codes.stats POOL",
    args=dict(_POOL),
)
async def codes_stats(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    now = _now(ctx)
    return await _run(ctx, partial(stats_sync, pool_name=args["pool"], now=now), write=False)


@command(
    "codes.pools",
    role=Role.VIEWER,
    mutating=False,
    summary="every code pool with its available codes and thresholds",
    usage="codes.pools",
)
async def codes_pools(ctx: CommandContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    pools = await _run(ctx, list_pools, write=False)
    return [p.to_dict() for p in pools]


@command(
    "codes.configure",
    role=Role.OPERATOR,
    mutating=True,
    summary="create a pool or set its series and low-stock thresholds (0 turns one off)",
    usage="codes.configure POOL [series] [low N] [low_percent P]",
    args={
        **_POOL,
        "series": ArgSpec(str, help="codes are unique across the pools of a series"),
        "low": ArgSpec(int, help="alert when available codes fall to N"),
        "low_percent": ArgSpec(int, help="alert when available codes fall to P% of those loaded"),
    },
)
async def codes_configure(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    now = _now(ctx)
    pool = await _run(
        ctx,
        partial(
            configure_pool,
            name=args["pool"],
            now=now,
            series=args.get("series"),
            low_absolute=args.get("low"),
            low_percent=args.get("low_percent"),
        ),
    )
    return pool.to_dict()


@command(
    "codes.revoke",
    role=Role.OPERATOR,
    mutating=True,
    summary="revoke one code of a pool, or every unassigned one",
    usage="codes.revoke POOL (CODE | all_unassigned)",
    args={
        **_POOL,
        "code": ArgSpec(str, help="the code to revoke", secret=True),
        "all_unassigned": ArgSpec(bool, help="revoke every available code of the pool"),
    },
)
async def codes_revoke(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    now = _now(ctx)
    has_code = "code" in args
    if has_code == bool(args.get("all_unassigned")):
        raise CommandError("invalid_args", "give either a code or all_unassigned")
    if has_code:
        previous = await _run(
            ctx, partial(revoke_code, pool_name=args["pool"], code=args["code"], now=now)
        )
        return {"pool": args["pool"], "revoked": 1 if previous != "revoked" else 0, "was": previous}
    count = await _run(ctx, partial(revoke_unassigned, pool_name=args["pool"], now=now))
    return {"pool": args["pool"], "revoked": count}


@command(
    "codes.expire",
    role=Role.OPERATOR,
    mutating=True,
    summary="run the expiry sweep now (the codepool actor runs it every minute)",
    usage="codes.expire",
)
async def codes_expire(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    now = _now(ctx)
    total: dict[str, int] = {}
    while True:
        done = await _run(ctx, partial(expire_sync, now=now))
        if not done:
            break
        for pool, n in done.items():
            total[pool] = total.get(pool, 0) + n
    return {"expired": total}


@command(
    "codes.redeem",
    role=Role.OPERATOR,
    mutating=True,
    summary="redeem a code for a customer (with the [fraud] limits)",
    usage="codes.redeem CODE CUSTOMER [IP]",
    args={
        "code": ArgSpec(str, required=True, secret=True),
        "customer": ArgSpec(str, required=True, help="customer id"),
        "ip": ArgSpec(str, help="the client's address (default 127.0.0.1)"),
    },
)
async def codes_redeem(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    fraud = getattr(getattr(ctx.app, "config", None), "fraud", None)
    try:
        result = await redeem(
            ctx.app, args["code"], args["customer"], args.get("ip", "127.0.0.1"), fraud, _now(ctx)
        )
    except ValueError as exc:
        raise CommandError("invalid_args", str(exc)) from None
    return result.to_dict()


CODE_COMMANDS: tuple[Command, ...] = (
    codes_generate,
    codes_import_begin,
    codes_import_chunk,
    codes_import_commit,
    codes_import_abort,
    codes_stats,
    codes_pools,
    codes_configure,
    codes_revoke,
    codes_expire,
    codes_redeem,
)
