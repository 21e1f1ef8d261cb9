"""Admin commands of tags and tag rules (``promodctl tags ...``).

``tags.apply`` (operator, audited) makes a rules file the current rule set, every error
reported at once with its key path; the tagger then checks the new versions over every
customer. ``tags.simulate`` (operator) says per rule how many customers it would tag and
untag now, on the snapshot reader, writing nothing. ``tags.add`` and ``tags.remove``
(operator, audited) edit one customer's tags by hand. ``tags.list``, ``tags.show``,
``tags.rules`` and ``tags.history`` (viewer) read::

    -> {"cmd": "tags.apply", "args": {"rules": "<TOML text>", "format": "toml"}}
    <- {"ok": true, "result": {"created": [{"name": "bonus", "version": 1}], ...}}
    -> {"cmd": "tags.add", "args": {"customer": "c42", "tag": "vip", "reason": "call"}}
    -> {"cmd": "tags.history", "args": {"customer": "c42"}}
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Literal, TypeVar

from pydantic import TypeAdapter, ValidationError

from promod.actors.messages import RulesChanged
from promod.actors.refs import wake
from promod.admin.registry import ArgSpec, Command, CommandContext, CommandError, Role, command
from promod.customers.records import Name
from promod.store.seam import Transaction
from promod.tags import store
from promod.tags.rules import RulesError, TagRule, load_rules

__all__ = ["TAG_COMMANDS", "check_tag_name", "operator_source"]

T = TypeVar("T")
_TAG_NAME: TypeAdapter[str] = TypeAdapter(Name)
MAX_HISTORY = 1000


def check_tag_name(tag: object, field: str = "tag") -> str:
    """``tag`` if it is a valid tag name (what customer profiles accept), else a refusal."""
    try:
        return _TAG_NAME.validate_python(tag)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"]
        raise CommandError(
            "invalid_args", f"{field}: {message}", {"errors": [{"path": field, "message": message}]}
        ) from None


def operator_source(ctx: CommandContext) -> str:
    """``operator:USER`` (or ``operator:uid:N``) of the admin caller."""
    return "operator:" + (ctx.caller.user or f"uid:{ctx.caller.uid}")


async def _run(ctx: CommandContext, fn: Callable[[Transaction], T], *, write: bool) -> T:
    try:
        return await ctx.app.db.run(fn, write=write)
    except store.TagError as exc:
        raise CommandError(exc.code, exc.message, exc.details or None) from None


def _rules(args: dict[str, Any]) -> list[TagRule]:
    fmt = args.get("format", "toml")
    if fmt not in ("toml", "json"):
        raise CommandError("invalid_args", "format must be toml or json")
    chosen: Literal["toml", "json"] = "json" if fmt == "json" else "toml"
    try:
        return load_rules(args["rules"], chosen)
    except RulesError as exc:
        raise CommandError(
            "invalid_args",
            f"the rules file has {len(exc.issues)} error(s)",
            {"errors": exc.as_dicts()},
        ) from None


_RULES_ARGS = {
    "rules": ArgSpec(str, required=True, help="the rules file's text"),
    "format": ArgSpec(str, help="toml (default) or json"),
}


@command(
    "tags.apply",
    role=Role.OPERATOR,
    mutating=True,
    summary="make a rules file the current tag rules (new versions of changed rules)",
    usage="tags apply -f RULES.toml",
    args=dict(_RULES_ARGS),
)
async def tags_apply(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    rules = _rules(args)
    by = ctx.caller.user or f"uid:{ctx.caller.uid}"
    result = await _run(
        ctx,
        partial(store.apply_rules, rules=rules, now=float(ctx.app.clock.now()), by=by),
        write=True,
    )
    wake(ctx.app.actor("tagger"), RulesChanged())
    return result


@command(
    "tags.simulate",
    role=Role.OPERATOR,
    mutating=False,
    summary="dry run of a rules file: per rule, customers it would tag and untag now",
    usage="tags simulate -f RULES.toml",
    args=dict(_RULES_ARGS),
)
async def tags_simulate(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    rules = _rules(args)
    now = float(ctx.app.clock.now())
    found = await _run(ctx, partial(store.simulate, rules=rules, as_of=now), write=False)
    return {"as_of": now, "rules": found}


@command(
    "tags.list",
    role=Role.VIEWER,
    mutating=False,
    summary="every tag: customers carrying it, the rule that maintains it",
    usage="tags list",
)
async def tags_list(ctx: CommandContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    return await _run(ctx, store.list_tags, write=False)


@command(
    "tags.show",
    role=Role.VIEWER,
    mutating=False,
    summary="one tag: customers by source, its rule, the latest changes",
    usage="tags show TAG",
    args={"tag": ArgSpec(str, required=True, help="tag name")},
)
async def tags_show(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    return await _run(ctx, partial(store.show_tag, tag=args["tag"]), write=False)


@command(
    "tags.rules",
    role=Role.VIEWER,
    mutating=False,
    summary="the current tag rules, or every version of one",
    usage="tags rules [NAME]",
    args={"name": ArgSpec(str, help="a rule name: list its versions")},
)
async def tags_rules(ctx: CommandContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    name = args.get("name")
    if name is not None:
        versions = await _run(ctx, partial(store.rule_versions, name=name), write=False)
        if not versions:
            raise CommandError("not_found", f"no tag rule {name!r}", {"name": name})
        return versions
    rules = await _run(ctx, store.active_rules, write=False)
    return [
        {"name": r.rule.name, "version": r.version, "checked_at": r.checked_at, **r.rule.to_dict()}
        for r in rules
    ]


@command(
    "tags.history",
    role=Role.VIEWER,
    mutating=False,
    summary="tag changes, newest first: added or removed, by what, when",
    usage="tags history [--customer ID] [--tag TAG] [--limit N] [--before ID]",
    args={
        "customer": ArgSpec(str, help="only this customer"),
        "tag": ArgSpec(str, help="only this tag"),
        "limit": ArgSpec(int, help=f"at most N changes (default 100, at most {MAX_HISTORY})"),
        "before": ArgSpec(int, help="only changes older than this history id (paging)"),
    },
)
async def tags_history(ctx: CommandContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    limit = args.get("limit", store.HISTORY_LIMIT)
    if not 1 <= limit <= MAX_HISTORY:
        raise CommandError("invalid_args", f"limit must be between 1 and {MAX_HISTORY}")
    return await _run(
        ctx,
        partial(
            store.history,
            customer_id=args.get("customer"),
            tag=args.get("tag"),
            limit=limit,
            before=args.get("before"),
        ),
        write=False,
    )


_EDIT_ARGS = {
    "customer": ArgSpec(str, required=True, help="customer id"),
    "tag": ArgSpec(str, required=True, help="tag name"),
    "reason": ArgSpec(str, help="why (kept in the tag history)"),
}


async def _edit(
    ctx: CommandContext, args: dict[str, Any], fn: Callable[..., bool], verb: str
) -> dict[str, Any]:
    tag = check_tag_name(args["tag"])
    reason = args.get("reason")
    if reason is not None and len(reason) > 500:
        raise CommandError("invalid_args", "reason: at most 500 characters")
    changed = await _run(
        ctx,
        partial(
            fn,
            customer_id=args["customer"],
            tag=tag,
            source=operator_source(ctx),
            reason=reason,
            now=float(ctx.app.clock.now()),
        ),
        write=True,
    )
    return {"customer": args["customer"], "tag": tag, verb: changed}


@command(
    "tags.add",
    role=Role.OPERATOR,
    mutating=True,
    summary="tag a customer by hand (kept in the tag history with your name)",
    usage="tags add CUSTOMER TAG [--reason TEXT]",
    args=dict(_EDIT_ARGS),
)
async def tags_add(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    return await _edit(ctx, args, store.add_tag, "added")


@command(
    "tags.remove",
    role=Role.OPERATOR,
    mutating=True,
    summary="untag a customer by hand (kept in the tag history with your name)",
    usage="tags remove CUSTOMER TAG [--reason TEXT]",
    args=dict(_EDIT_ARGS),
)
async def tags_remove(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    return await _edit(ctx, args, store.remove_tag, "removed")


TAG_COMMANDS: tuple[Command, ...] = (
    tags_apply,
    tags_simulate,
    tags_list,
    tags_show,
    tags_rules,
    tags_history,
    tags_add,
    tags_remove,
)
