"""Admin commands for campaigns, the kill switch and the test clock.

    {"cmd": "campaign.apply", "args": {"spec": "<TOML text>", "format": "toml"}}
    {"cmd": "campaign.launch", "args": {"campaign": "winback-30d", "pilot": "5%"}}
    {"cmd": "campaign.report", "args": {"campaign": "winback-30d"}}
    {"cmd": "kill.engage"} / {"cmd": "kill.release"}

``promodctl campaign apply -f FILE`` reads the file and sends its text.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from promod.actors.messages import JobFor, Kick
from promod.actors.refs import wake
from promod.admin.registry import ArgSpec, Command, CommandContext, CommandError, Role, command
from promod.campaigns import store
from promod.campaigns.plan import pilot_size
from promod.campaigns.policy import policy_issues, policy_warnings
from promod.campaigns.report import report_csv, report_sync
from promod.campaigns.simulate import MAX_HORIZON, simulate_sync
from promod.campaigns.spec import SpecError, load_spec, spec_warnings
from promod.clock import ManualClock
from promod.ledger import killswitch
from promod.notify.campaigns import (
    notification_issues,
    notification_report,
    notification_simulate,
)
from promod.notify.templates import templates_dir
from promod.units import parse_duration

CAMPAIGN = {"campaign": ArgSpec(str, required=True, help="campaign id")}


def _kick(ctx: CommandContext) -> None:
    wake(ctx.app.actor("scheduler"), Kick())


async def _guard(coro: Any) -> Any:
    try:
        return await coro
    except store.CampaignError as exc:
        raise CommandError(exc.code, exc.message) from None


def _who(ctx: CommandContext) -> str:
    return ctx.caller.user or f"uid:{ctx.caller.uid}"


@command(
    "campaign.apply",
    role=Role.OPERATOR,
    mutating=True,
    summary="create a campaign, or update one that has not started, from a spec",
    usage="campaign apply -f FILE",
    args={
        "spec": ArgSpec(str, required=True, help="the spec text"),
        "format": ArgSpec(str, help="toml (default) or json"),
    },
)
async def campaign_apply(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    """Validate every key (all errors at once, with paths) and store a new version."""
    app = ctx.app
    fmt = args.get("format", "toml")
    if fmt not in ("toml", "json"):
        raise CommandError("invalid_args", "format must be toml or json")
    try:
        spec = load_spec(
            args["spec"],
            fmt,
            default_timezone=app.config.daemon.timezone,
            providers=app.plugins.reward_providers,
            channels=set(app.config.channels),
        )
    except SpecError as exc:
        raise CommandError(
            "invalid_args",
            f"the campaign spec has {len(exc.issues)} error(s)",
            {"errors": exc.as_dicts()},
        ) from None
    issues = _provider_issues(spec) + policy_issues(app.config.policy, spec)
    issues += notification_issues(spec, templates_dir(app.config))
    if issues:
        raise CommandError(
            "invalid_args", f"the campaign spec has {len(issues)} error(s)", {"errors": issues}
        )
    result: dict[str, Any] = await _guard(
        store.apply(app.db, spec, by=_who(ctx), now=app.clock.now())
    )
    result["warnings"] = [
        *({"path": w.path, "message": w.message} for w in spec_warnings(spec)),
        *policy_warnings(app.config.policy, spec),
    ]
    return result


def _provider_issues(spec: Any) -> list[dict[str, str]]:
    issues = []
    rewards = [("reward", spec.reward)]
    if spec.reward.fallback is not None:
        rewards.append(("reward.fallback", spec.reward.fallback))
    for path, reward in rewards:
        if reward.provider == "wallet_points" and reward.amount_minor is not None:
            if reward.amount_minor % (10**reward.amount_exponent):
                issues.append({"path": f"{path}.amount", "message": "points are whole numbers"})
    return issues


@command("campaign.list", role=Role.VIEWER, mutating=False, summary="every campaign")
async def campaign_list(ctx: CommandContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    return [c.to_dict() for c in await store.list_all(ctx.app.db)]


@command(
    "campaign.show",
    role=Role.VIEWER,
    mutating=False,
    summary="a campaign's state, spec and versions",
    usage="campaign show ID",
    args=CAMPAIGN,
)
async def campaign_show(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    campaign = await _guard(store.get(ctx.app.db, args["campaign"]))
    versions = await ctx.app.db.run(lambda tx: store.versions_sync(tx, campaign.id), write=False)
    return {
        **campaign.to_dict(),
        "summary": campaign.spec.summary(),
        "spec": campaign.spec_dict,
        "versions": versions,
    }


@command(
    "campaign.simulate",
    role=Role.VIEWER,
    mutating=False,
    summary="dry run: who would be granted, what it costs, which cap binds when",
    usage="campaign simulate ID [--horizon 30d]",
    args={
        **CAMPAIGN,
        "horizon": ArgSpec(str, help="how far ahead recurring runs are projected (default 30d)"),
    },
)
async def campaign_simulate(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    app = ctx.app
    horizon = None
    if "horizon" in args:
        try:
            horizon = parse_duration(args["horizon"])
        except ValueError as exc:
            raise CommandError("invalid_args", f"horizon: {exc}") from None
        if not 0 < horizon <= MAX_HORIZON:
            raise CommandError(
                "invalid_args",
                f"horizon: must be more than 0 and at most {MAX_HORIZON // 86400:.0f}d",
            )
    campaign = await _guard(store.get(app.db, args["campaign"]))
    if campaign.spec.kind == "live_action":
        raise CommandError("conflict", "live_action campaigns cannot be simulated")
    now = app.clock.now()
    if campaign.spec.kind == "notification":
        projection: dict[str, Any] = await app.db.run(
            partial(notification_simulate, campaign=campaign, now=now), write=False
        )
        return projection
    job = await app.actor("ledger").ask(JobFor(campaign, run_id=0))
    result: dict[str, Any] = await app.db.run(
        lambda tx: simulate_sync(tx, campaign, job, now, horizon=horizon), write=False
    )
    return result


@command(
    "campaign.launch",
    role=Role.OPERATOR,
    mutating=True,
    summary="launch a draft campaign (optionally a pilot slice first)",
    usage="campaign launch ID [--pilot N|P%]",
    args={**CAMPAIGN, "pilot": ArgSpec(str, help="N customers or P% first, then wait")},
)
async def campaign_launch(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    pilot = args.get("pilot")
    if pilot is not None:
        try:
            if pilot_size(pilot, 1000) <= 0 or (pilot.endswith("%") and float(pilot[:-1]) > 100):
                raise ValueError
        except (ValueError, ArithmeticError):
            raise CommandError(
                "invalid_args", "pilot must be a count N or a share P% (0<P<=100)"
            ) from None
    app = ctx.app
    campaign: store.CampaignRow = await _guard(
        store.launch(app.db, args["campaign"], now=app.clock.now(), pilot=pilot)
    )
    _kick(ctx)
    return campaign.to_dict()


def _transition(name: str, summary: str, action: Any, *, with_caller: bool = False) -> Command:
    @command(
        f"campaign.{name}",
        role=Role.OPERATOR,
        mutating=True,
        summary=summary,
        usage=f"campaign {name} ID",
        args=CAMPAIGN,
    )
    async def handler(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        extra = {"by": _who(ctx)} if with_caller else {}
        await _guard(action(ctx.app.db, args["campaign"], now=ctx.app.clock.now(), **extra))
        _kick(ctx)
        campaign: store.CampaignRow = await store.get(ctx.app.db, args["campaign"])
        return campaign.to_dict()

    return handler


campaign_pause = _transition(
    "pause",
    "pause a campaign until an operator resumes it (also one paused by a cap or pilot)",
    store.pause,
    with_caller=True,
)
campaign_resume = _transition(
    "resume", "resume a paused campaign (after a pilot: the rest)", store.resume
)
campaign_stop = _transition("stop", "stop a campaign for good", store.stop)


@command(
    "campaign.report",
    role=Role.VIEWER,
    mutating=False,
    summary="targeted, granted, refused by reason, spend against every cap, per day",
    usage="campaign report ID [--csv]",
    args={**CAMPAIGN, "format": ArgSpec(str, help="json (default) or csv")},
)
async def campaign_report(ctx: CommandContext, args: dict[str, Any]) -> Any:
    app = ctx.app
    policy, site_timezone, now = app.config.policy, app.config.daemon.timezone, app.clock.now()
    campaign = await _guard(store.get(app.db, args["campaign"]))
    if campaign.spec.kind == "notification":
        figures: dict[str, Any] = await app.db.run(
            partial(notification_report, campaign=campaign), write=False
        )
        return figures
    report = await app.db.run(
        lambda tx: report_sync(
            tx, args["campaign"], policy=policy, site_timezone=site_timezone, now=now
        ),
        write=False,
    )
    if report is None:
        raise CommandError("not_found", f"no campaign {args['campaign']!r}")
    if args.get("format") == "csv":
        return {"csv": report_csv(report)}
    return report


@command(
    "kill.engage",
    role=Role.OPERATOR,
    mutating=True,
    summary="stop every grant and marketing message until released",
    usage="kill",
)
async def kill_engage(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    changed = await killswitch.engage(ctx.app.db, by=_who(ctx), now=ctx.app.clock.now())
    return {"engaged": True, "changed": changed, **(await killswitch.state(ctx.app.db) or {})}


@command(
    "kill.release",
    role=Role.ADMIN,
    mutating=True,
    summary="release the kill switch",
    usage="kill --release",
)
async def kill_release(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    changed = await killswitch.release(ctx.app.db)
    _kick(ctx)
    return {"engaged": False, "changed": changed}


@command("kill.status", role=Role.VIEWER, mutating=False, summary="is the kill switch engaged")
async def kill_status(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    state = await killswitch.state(ctx.app.db)
    return {"engaged": state is not None, **(state or {})}


@command(
    "clock.advance",
    role=Role.ADMIN,
    mutating=True,
    summary="move the test clock forward (daemon started with PROMOD_TEST_CLOCK only)",
    usage="call clock.advance '{\"seconds\": 3600}'",
    args={
        "seconds": ArgSpec((int, float), help="seconds"),
        "to": ArgSpec((int, float), help="epoch"),
    },
)
async def clock_advance(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    clock = ctx.app.clock
    if not isinstance(clock, ManualClock):
        raise CommandError("unavailable", "the daemon runs on the system clock")
    try:
        if "to" in args:
            clock.set(float(args["to"]))
        else:
            clock.advance(float(args.get("seconds", 0)))
    except ValueError as exc:
        raise CommandError("invalid_args", str(exc)) from None
    return {"now": clock.now()}


CAMPAIGN_COMMANDS: tuple[Command, ...] = (
    campaign_apply,
    campaign_list,
    campaign_show,
    campaign_simulate,
    campaign_launch,
    campaign_pause,
    campaign_resume,
    campaign_stop,
    campaign_report,
    kill_engage,
    kill_release,
    kill_status,
    clock_advance,
)
