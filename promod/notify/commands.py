"""Admin commands of the outbox: figures, dead letters, retry and drop.

``outbox`` (viewer) answers depth, oldest pending, failures and dead letters per
channel; ``outbox.list`` (viewer) lists deliveries of one state (default dead);
``outbox.retry`` and ``outbox.drop`` (operator, audited) act on one delivery id
(or, for retry, ``all`` dead letters, optionally of one ``channel``)::

    -> {"cmd": "outbox.retry", "args": {"id": 42}}
    <- {"ok": true, "result": {"retried": 1}}

Command line: ``promodctl outbox``, ``outbox list [--state S]``, ``outbox retry ID|--all``,
``outbox drop ID`` (promod.ctl.outbox).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from promod.actors.messages import Wake
from promod.actors.refs import wake
from promod.admin.registry import ArgSpec, Command, CommandContext, CommandError, Role, command
from promod.notify import store
from promod.notify.deliveries import outbox_stats_sync
from promod.store.seam import Transaction

__all__ = ["OUTBOX_COMMANDS"]

STATES = ("pending", "sent", "dead", "skipped", "dropped")


def _wake(ctx: CommandContext) -> None:
    wake(ctx.app.actor("notifier"), Wake())  # the notifier also polls: a miss only delays


@command("outbox", role=Role.VIEWER, mutating=False, summary="outbox depth, failures, dead letters")
async def outbox_status(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = await ctx.app.db.run(
        partial(outbox_stats_sync, now=ctx.app.clock.now()), write=False
    )
    return result


@command(
    "outbox.list",
    role=Role.VIEWER,
    mutating=False,
    summary="list deliveries of one state (default: dead letters)",
    usage="outbox.list [STATE] [CHANNEL] [LIMIT]",
    args={
        "state": ArgSpec(str, help=" | ".join(STATES) + " (default dead)"),
        "channel": ArgSpec(str, help="only this channel"),
        "limit": ArgSpec(int, help="at most N rows (default 100)"),
    },
)
async def outbox_list(ctx: CommandContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    state = args.get("state", "dead")
    if state not in STATES:
        raise CommandError("invalid_args", f"state must be one of {', '.join(STATES)}")
    limit = int(args.get("limit", 100))
    if not 1 <= limit <= 10000:
        raise CommandError("invalid_args", "limit must be between 1 and 10000")
    rows: list[dict[str, Any]] = await ctx.app.db.run(
        partial(store.list_deliveries, state=state, channel=args.get("channel"), limit=limit),
        write=False,
    )
    return rows


def _retry(tx: Transaction, delivery_id: int | None, channel: str | None, now: float) -> int:
    if delivery_id is None:
        return store.retry_dead(tx, channel, now)
    state = store.delivery_state(tx, delivery_id)
    if state is None:
        raise CommandError("not_found", f"no delivery {delivery_id}")
    if state not in ("dead", "dropped", "pending"):
        raise CommandError("conflict", f"delivery {delivery_id} is {state}: nothing to retry")
    store.retry_one(tx, delivery_id, now)
    return 1


@command(
    "outbox.retry",
    role=Role.OPERATOR,
    mutating=True,
    summary="send a dead (or dropped) delivery again, or a pending one now",
    usage="outbox.retry ID | outbox.retry all=true [CHANNEL]",
    args={
        "id": ArgSpec(int, help="delivery id (promodctl outbox list)"),
        "all": ArgSpec(bool, help="every dead letter"),
        "channel": ArgSpec(str, help="with all: only this channel's"),
    },
)
async def outbox_retry(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    delivery_id = args.get("id")
    if (delivery_id is None) == (not args.get("all")):
        raise CommandError("invalid_args", "give either id or all=true")
    count: int = await ctx.app.db.run(
        partial(
            _retry,
            delivery_id=delivery_id,
            channel=args.get("channel"),
            now=ctx.app.clock.now(),
        )
    )
    _wake(ctx)
    return {"retried": count}


def _drop(tx: Transaction, delivery_id: int, now: float) -> None:
    state = store.delivery_state(tx, delivery_id)
    if state is None:
        raise CommandError("not_found", f"no delivery {delivery_id}")
    if state not in ("dead", "pending"):
        raise CommandError("conflict", f"delivery {delivery_id} is {state}: cannot drop it")
    store.drop_one(tx, delivery_id, now)


@command(
    "outbox.drop",
    role=Role.OPERATOR,
    mutating=True,
    summary="give up on a dead or pending delivery for good",
    usage="outbox.drop ID",
    args={"id": ArgSpec(int, required=True, help="delivery id")},
)
async def outbox_drop(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    await ctx.app.db.run(partial(_drop, delivery_id=args["id"], now=ctx.app.clock.now()))
    return {"dropped": args["id"]}


OUTBOX_COMMANDS: tuple[Command, ...] = (outbox_status, outbox_list, outbox_retry, outbox_drop)
