"""Admin commands for customers and events: streamed imports and ``customers.show``.

Imports (role operator; ``begin``/``commit``/``abort`` are mutating and audited, a
``chunk`` only stages rows and is not written to the audit log, which must not hold
customer data)::

    -> {"cmd": "customers.import.begin", "args": {"format": "csv", "columns": ["id", "email"]}}
    <- {"ok": true, "result": {"import_id": "imp_3f2a..."}}
    -> {"cmd": "customers.import.chunk", "args": {"import_id": "imp_3f2a...",
        "rows": [{"line": 2, "row": {"id": "c1", "email": ""}}]}}
    <- {"ok": true, "result": {"import_id": "imp_3f2a...", "rows": 1, "valid": 1, "error_count": 0}}
    -> {"cmd": "customers.import.commit", "args": {"import_id": "imp_3f2a..."}}
    <- {"ok": true, "result": {"imported": 1, "created": 1, "updated": 0}}

``events.import.*`` is the same for JSON lines of events (``commit`` answers
``{"imported", "skipped"}``); ``*.import.status`` shows an import in progress.
``customers.show {"customer": "c42"}`` (viewer) answers the profile, tags, consents and
attributes. ``promodctl customers import FILE`` / ``events import FILE`` /
``customers show ID`` are the command-line forms (promod.ctl.imports)::

    register_customer_commands(app.commands)
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from promod.admin.registry import (
    ArgSpec,
    Command,
    CommandContext,
    CommandError,
    CommandRegistry,
    Role,
    command,
)
from promod.customers.imports import (
    FORMATS,
    MAX_CHUNK_ROWS,
    ImportKind,
    abort_import,
    begin_import,
    commit_import,
    import_status,
    stage_chunk,
)
from promod.customers.store import profile_sync, wallet_points_sync
from promod.rewards.holdings import REWARD_STATES, HeldReward, customer_rewards_sync
from promod.store.database import Database
from promod.store.seam import Transaction, legacy_connection

if TYPE_CHECKING:
    from promod.app import App

__all__ = [
    "CUSTOMER_COMMANDS",
    "customer_profile",
    "register_customer_commands",
    "wallet_and_rewards",
]


def _now(ctx: CommandContext) -> float:
    clock = getattr(ctx.app, "clock", None)
    return float(clock.now()) if clock is not None else time.time()


def _db(ctx: CommandContext) -> Database:
    db: Database = ctx.app.db
    return db


def _import_commands(kind: ImportKind) -> list[Command]:
    """begin, chunk, commit, abort and status of one import kind."""
    formats = FORMATS[kind]
    import_id = {"import_id": ArgSpec(str, required=True, help="from begin")}
    begin_args = {
        "format": ArgSpec(
            str, required=len(formats) > 1, help=" or ".join(formats) + f" (default {formats[0]})"
        )
    }
    if "csv" in formats:
        begin_args["columns"] = ArgSpec(list, help="csv: the header row, checked up front")

    @command(
        f"{kind}.import.begin",
        role=Role.OPERATOR,
        mutating=True,
        summary=f"start an all-or-nothing {kind} import",
        usage=f"{kind}.import.begin FORMAT [COLUMNS]",
        args=begin_args,
    )
    async def begin(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        columns = args.get("columns")
        if columns is not None and not all(isinstance(c, str) for c in columns):
            raise CommandError("invalid_args", "columns must be a list of strings")
        new_id = await begin_import(
            _db(ctx), kind, args.get("format", formats[0]), now=_now(ctx), columns=columns
        )
        return {"import_id": new_id}

    @command(
        f"{kind}.import.chunk",
        role=Role.OPERATOR,
        mutating=False,
        summary=f"validate and stage up to {MAX_CHUNK_ROWS} rows of a {kind} import",
        usage=f"{kind}.import.chunk IMPORT_ID ROWS",
        args={
            **import_id,
            "rows": ArgSpec(list, required=True, help='[{"line": N, "text"|"row"|"error": ...}]'),
        },
    )
    async def chunk(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        return await stage_chunk(_db(ctx), kind, args["import_id"], args["rows"], now=_now(ctx))

    @command(
        f"{kind}.import.commit",
        role=Role.OPERATOR,
        mutating=True,
        summary=f"write a {kind} import in one transaction, or refuse it with its errors",
        usage=f"{kind}.import.commit IMPORT_ID",
        args=dict(import_id),
    )
    async def commit(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        return await commit_import(_db(ctx), kind, args["import_id"], now=_now(ctx))

    @command(
        f"{kind}.import.abort",
        role=Role.OPERATOR,
        mutating=True,
        summary=f"discard a {kind} import in progress",
        usage=f"{kind}.import.abort IMPORT_ID",
        args=dict(import_id),
    )
    async def abort(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        return await abort_import(_db(ctx), kind, args["import_id"])

    @command(
        f"{kind}.import.status",
        role=Role.OPERATOR,
        mutating=False,
        summary=f"counts and first errors of a {kind} import in progress",
        usage=f"{kind}.import.status IMPORT_ID",
        args=dict(import_id),
    )
    async def status(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        return await import_status(_db(ctx), kind, args["import_id"])

    return [begin, chunk, commit, abort, status]


async def customer_profile(db: Database, customer_id: str) -> dict[str, Any] | None:
    """Profile, attributes, tags, consents and event totals of a customer; None if unknown."""
    found = await db.run(lambda tx: profile_sync(tx, customer_id), write=False)
    if found is None:
        return None
    row, tags, consents, events = found
    return {
        "id": row["id"],
        "email": row["email"],
        "timezone": row["timezone"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "tags": [t["tag"] for t in tags],
        "consents": {
            c["consent"]: {
                "granted": bool(c["granted"]),
                "updated_at": c["updated_at"],
                "source": c["source"],
            }
            for c in consents
        },
        "attributes": json.loads(row["attributes"]),
        "events": {
            "count": int(events[0]) if events else 0,
            "last_ts": events[1] if events else None,
        },
    }


async def wallet_and_rewards(app: App, customer_id: str) -> dict[str, Any]:
    """The wallet balance and the rewards a customer holds, newest first (50 at most).

    Every reward is listed with its real state (issued, redeemed, revoked, expired;
    see :mod:`promod.rewards.holdings`). Codes are shown: ``customers show`` is an
    operator's view of one customer.
    """
    now = float(app.clock.now()) if getattr(app, "clock", None) is not None else time.time()

    def read(tx: Transaction) -> tuple[int | None, list[HeldReward]]:
        balance = wallet_points_sync(tx, customer_id)
        held = customer_rewards_sync(
            legacy_connection(tx), customer_id, now=now, states=REWARD_STATES
        )
        return balance, held

    balance, held = await app.db.run(read, write=False)
    rewards = [
        {
            "grant": r.grant_id,
            "campaign": r.campaign_id,
            "provider": r.provider,
            "value": r.value,
            "currency": r.currency,
            "state": r.state,
            "granted_at": r.granted_at,
            "code": r.code,
            "expires_at": r.expires_at,
            "redeemed_at": r.redeemed_at,
            "ended_at": r.ended_at,
        }
        for r in reversed(held[-50:])
    ]
    return {"wallet": {"points": 0 if balance is None else balance}, "rewards": rewards}


@command(
    "customers.show",
    role=Role.VIEWER,
    mutating=False,
    summary="a customer's profile, tags, consents and attributes",
    usage="customers.show CUSTOMER",
    args={"customer": ArgSpec(str, required=True, help="customer id")},
)
async def customers_show(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    customer_id = args["customer"]
    profile = await customer_profile(_db(ctx), customer_id)
    if profile is None:
        raise CommandError("not_found", f"no customer {customer_id!r}", {"customer": customer_id})
    profile.update(await wallet_and_rewards(ctx.app, customer_id))
    return profile


CUSTOMER_COMMANDS: tuple[Command, ...] = (
    *_import_commands("customers"),
    *_import_commands("events"),
    customers_show,
)


def register_customer_commands(registry: CommandRegistry) -> CommandRegistry:
    """Add every command of this module to ``registry`` (returned for chaining)."""
    for cmd in CUSTOMER_COMMANDS:
        registry.register(cmd)
    return registry
