"""Admin commands of custom lists (``promodctl lists ...``).

``lists.import.begin|chunk|commit|abort`` (operator; begin, commit and abort are
audited, a chunk holds customer ids and is not), ``lists.list`` and ``lists.show``
(viewer), ``lists.delete`` (operator, audited)::

    -> {"cmd": "lists.import.begin", "args": {"list": "vip-2026", "format": "lines",
                                              "mode": "replace"}}
    <- {"ok": true, "result": {"import_id": "limp_3f2a..."}}
    -> {"cmd": "lists.import.chunk", "args": {"import_id": "limp_3f2a...",
        "rows": [{"line": 1, "text": "c1"}, {"line": 2, "text": "c2"}]}}
    -> {"cmd": "lists.import.commit", "args": {"import_id": "limp_3f2a..."}}
    <- {"ok": true, "result": {"list": "vip-2026", "version": 3, "members": 2, "added": 1,
        "removed": 5, "without_profile": 1, "without_profile_ids": ["c2"], ...}}
    -> {"cmd": "lists.delete", "args": {"list": "vip-2026"}}
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from promod.admin.registry import ArgSpec, Command, CommandContext, CommandError, Role, command
from promod.lists.imports import (
    FORMATS,
    MAX_CHUNK_ROWS,
    abort_list_import,
    begin_list_import,
    commit_list_import,
    stage_list_chunk,
)
from promod.lists.store import MODES, ListError, delete_list, list_lists, show_list
from promod.store.seam import Transaction

__all__ = ["LIST_COMMANDS"]

T = TypeVar("T")


def _now(ctx: CommandContext) -> float:
    clock = getattr(ctx.app, "clock", None)
    return float(clock.now()) if clock is not None else time.time()


async def _guard(work: Awaitable[T]) -> T:
    try:
        return await work
    except ListError as exc:
        raise CommandError(exc.code, exc.message, exc.details or None) from None


async def _read(ctx: CommandContext, fn: Callable[[Transaction], T]) -> T:
    return await _guard(ctx.app.db.run(fn, write=False))


_IMPORT_ID = {"import_id": ArgSpec(str, required=True, help="from lists.import.begin")}


@command(
    "lists.import.begin",
    role=Role.OPERATOR,
    mutating=True,
    summary="start an all-or-nothing import into a custom list",
    usage="lists.import.begin LIST [FORMAT lines|csv|jsonl] [MODE replace|add] [COLUMNS]",
    args={
        "list": ArgSpec(str, required=True, help="list name"),
        "format": ArgSpec(str, help=" | ".join(FORMATS) + " (default lines)"),
        "mode": ArgSpec(str, help="replace (default): the file is the new list; add"),
        "columns": ArgSpec(list, help="csv: the header row (needs an id column)"),
    },
)
async def lists_import_begin(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    mode = args.get("mode", "replace")
    if mode not in MODES:
        raise CommandError("invalid_args", f"mode must be replace or add, not {mode!r}")
    import_id = await _guard(
        begin_list_import(
            ctx.app.db,
            args["list"],
            args.get("format", "lines"),
            mode=mode,
            now=_now(ctx),
            columns=args.get("columns"),
        )
    )
    return {"import_id": import_id}


@command(
    "lists.import.chunk",
    role=Role.OPERATOR,
    mutating=False,
    summary=f"check and stage up to {MAX_CHUNK_ROWS} rows of a list import",
    usage="lists.import.chunk IMPORT_ID ROWS",
    args={
        **_IMPORT_ID,
        "rows": ArgSpec(list, required=True, help='[{"line": N, "text"|"row"|"error": ...}]'),
    },
)
async def lists_import_chunk(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    return await _guard(
        stage_list_chunk(ctx.app.db, args["import_id"], args["rows"], now=_now(ctx))
    )


@command(
    "lists.import.commit",
    role=Role.OPERATOR,
    mutating=True,
    summary="apply a list import in one transaction, or refuse it with its errors by line",
    usage="lists.import.commit IMPORT_ID",
    args=dict(_IMPORT_ID),
)
async def lists_import_commit(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    return await _guard(commit_list_import(ctx.app.db, args["import_id"], now=_now(ctx)))


@command(
    "lists.import.abort",
    role=Role.OPERATOR,
    mutating=True,
    summary="discard a list import in progress",
    usage="lists.import.abort IMPORT_ID",
    args=dict(_IMPORT_ID),
)
async def lists_import_abort(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    return await _guard(abort_list_import(ctx.app.db, args["import_id"], now=_now(ctx)))


@command(
    "lists.list",
    role=Role.VIEWER,
    mutating=False,
    summary="every custom list with its size",
    usage="lists.list",
)
async def lists_list(ctx: CommandContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    return await _read(ctx, list_lists)


@command(
    "lists.show",
    role=Role.VIEWER,
    mutating=False,
    summary="one custom list: size, members without a profile, versions, campaigns using it",
    usage="lists.show LIST",
    args={"list": ArgSpec(str, required=True, help="list name")},
)
async def lists_show(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    return await _read(ctx, partial(show_list, name=args["list"]))


@command(
    "lists.delete",
    role=Role.OPERATOR,
    mutating=True,
    summary="delete a custom list (refused while a live campaign uses it, unless force)",
    usage="lists.delete LIST [force]",
    args={
        "list": ArgSpec(str, required=True, help="list name"),
        "force": ArgSpec(bool, help="delete even though live campaigns use it"),
    },
)
async def lists_delete(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    fn = partial(delete_list, name=args["list"], force=bool(args.get("force", False)))
    return await _guard(ctx.app.db.run(fn))


LIST_COMMANDS: tuple[Command, ...] = (
    lists_import_begin,
    lists_import_chunk,
    lists_import_commit,
    lists_import_abort,
    lists_list,
    lists_show,
    lists_delete,
)
