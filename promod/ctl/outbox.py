"""``promodctl outbox [list|retry|drop]``: the client side of the outbox commands.

One ``COMMANDS`` row; the first word picks the daemon command::

    promodctl outbox                      # outbox: depth, oldest pending, failures, dead letters
    promodctl outbox list --state dead    # outbox.list
    promodctl outbox retry 42             # outbox.retry {"id": 42}   (or --all [--channel C])
    promodctl outbox drop 42              # outbox.drop {"id": 42}
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from promod.ctl.client import AdminClient
from promod.ctl.render import format_timestamp, render_kv, render_table, render_value
from promod.ctl.usage import UsageError

if TYPE_CHECKING:
    from promod.ctl.main import CtlCommand

__all__ = ["ACTIONS", "render_outbox", "run_outbox"]

ACTIONS = ("status", "list", "retry", "drop")


def run_outbox(command: CtlCommand, client: AdminClient, ns: argparse.Namespace) -> Any:
    action = ns.p_action or "status"
    target = ns.p_id
    if action == "status":
        return client.call("outbox", {})
    if action == "list":
        args: dict[str, Any] = {"state": ns.p_state or "dead"}
        if ns.p_channel:
            args["channel"] = ns.p_channel
        if ns.p_limit:
            args["limit"] = ns.p_limit
        return client.call("outbox.list", args)
    if action == "retry":
        if ns.p_all:
            if target is not None:
                raise UsageError("outbox retry: give an ID or --all, not both")
            args = {"all": True}
            if ns.p_channel:
                args["channel"] = ns.p_channel
            return client.call("outbox.retry", args)
        if target is None:
            raise UsageError("outbox retry: give a delivery ID (or --all)")
        return client.call("outbox.retry", {"id": target})
    if target is None:
        raise UsageError("outbox drop: give a delivery ID")
    return client.call("outbox.drop", {"id": target})


def _when(value: Any) -> Any:
    return format_timestamp(value) if isinstance(value, int | float) else value


def render_outbox(result: Any) -> str:
    if isinstance(result, list):
        rows = [{**row, "updated_at": _when(row.get("updated_at"))} for row in result]
        return render_table(
            rows,
            [
                "id",
                "event_id",
                "type",
                "kind",
                "channel",
                "state",
                "attempts",
                "updated_at",
                "last_error",
            ],
        )
    if isinstance(result, Mapping) and "channels" in result:
        shown = {k: v for k, v in result.items() if k != "channels"}
        shown["oldest_pending_at"] = _when(shown.get("oldest_pending_at"))
        text = render_kv(shown)
        channels = result.get("channels") or []
        if channels:
            text += "\n\n" + render_table(
                channels, ["channel", "pending", "failing", "sent", "dead", "skipped", "dropped"]
            )
        return text
    return render_value(result)
