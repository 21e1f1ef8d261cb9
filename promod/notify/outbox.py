"""The outbox: events written in the same transaction as what causes them.

Whatever happens — a grant, a cap running out, a campaign pausing — is recorded
as one outbox event with a stable ``event_id`` inside the transaction that makes
it happen; the notifier actor turns events into deliveries (alerts, webhooks,
customer messages) later, so nothing is lost or sent for a rolled-back change::

    enqueue_sync(conn, "cap.reached", {"campaign_id": "winback", "cap": "budget"}, now=now)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from promod.notify.store import insert_events
from promod.store.seam import TxLike, as_tx

# Every event type promod emits (docs/notifications.md; routed by the config's [alerts]).
EVENT_TYPES = frozenset(
    {
        "reward.granted",
        "cap.reached",
        "campaign.paused",
        "campaign.completed",
        "codepool.low",
        "fraud.suspected",
        "killswitch.engaged",
        "clearance.required",
        "clearance.low_approval",
        "actor.restarted",
        "plugin.circuit_open",
        "store.unavailable",
        "crm.sync_held",
        "crm.sync_failed",
        "notification.due",
    }
)


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def _payload(payload: Mapping[str, Any]) -> str:
    return json.dumps(dict(payload), separators=(",", ":"))


def enqueue_sync(
    conn: TxLike,
    type: str,
    payload: Mapping[str, Any],
    *,
    now: float,
    event_id: str | None = None,
) -> str:
    """Record one event inside the caller's open transaction; return its id.

    An ``event_id`` already present is ignored (the same occurrence is recorded once).
    ``conn`` is a :class:`~promod.store.seam.Transaction` (or a driver connection
    of code not yet behind the seam).
    """
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    event_id = event_id or new_event_id()
    row = {"event_id": event_id, "type": type, "payload": _payload(payload), "created_at": now}
    insert_events(as_tx(conn), [row])
    return event_id


def enqueue_many_sync(
    conn: TxLike,
    type: str,
    payloads: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    now: float,
) -> None:
    """Record many events of one type: ``[(event_id, payload), ...]``."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    insert_events(
        as_tx(conn),
        (
            {"event_id": eid, "type": type, "payload": _payload(p), "created_at": now}
            for eid, p in payloads
        ),
    )
