"""One CRM recipient record: checked against its list's consent and media type.

A record carries the customer fields of the import format (``id``, ``email``,
``timezone``, ``attributes``) and the CRM's technical fields: ``opt_in_id``,
``description``, ``media_type``, ``entity_type``, ``entity_id``, and optionally
``consent`` and ``opted_in_at`` (ISO-8601 or unix seconds). A record naming a
consent or media type other than its list's is refused, never stored elsewhere::

    record = parse_record({"id": "c1", "email": "a@example.org", "opt_in_id": "oi-7",
                           "media_type": "email", "entity_type": "contact",
                           "entity_id": "0031x"}, consent="marketing_email",
                          media_type="email")
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from promod.customers.records import RecordError, parse_customer

__all__ = ["CrmRecord", "RecordError", "parse_record"]

TECHNICAL = ("opt_in_id", "description", "media_type", "entity_type", "entity_id")
_OPTIONAL = ("consent", "opted_in_at")
_CUSTOMER = ("id", "email", "timezone", "attributes")
_MAX_TEXT = 256
_ALLOWED = frozenset((*TECHNICAL, *_OPTIONAL, *_CUSTOMER))
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class CrmRecord:
    customer_id: str
    email: str | None
    timezone: str | None
    attributes: str  # JSON object
    entity_type: str
    entity_id: str
    opt_in_id: str
    opted_in_at: float | None
    description: str | None
    media_type: str

    def row(self, run_id: int) -> tuple[Any, ...]:
        return (
            run_id,
            self.customer_id,
            self.email,
            self.timezone,
            self.attributes,
            self.entity_type,
            self.entity_id,
            self.opt_in_id,
            self.opted_in_at,
            self.description,
            self.media_type,
        )


def _text(obj: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise RecordError("is required", key)
        return None
    if not isinstance(value, str):
        raise RecordError(f"must be a string, got {type(value).__name__}", key)
    value = value.strip()
    if len(value) > _MAX_TEXT or _CONTROL.search(value):
        raise RecordError(f"at most {_MAX_TEXT} characters, no control characters", key)
    return value


def _moment(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RecordError("must be an ISO-8601 time or unix seconds", "opted_in_at")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(int(text))
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise RecordError(f"not a time: {text!r}", "opted_in_at") from None
        if moment.tzinfo is None:
            raise RecordError("needs a time zone (Z or +HH:MM)", "opted_in_at")
        return moment.timestamp()
    raise RecordError("must be an ISO-8601 time or unix seconds", "opted_in_at")


def parse_record(obj: Any, *, consent: str, media_type: str) -> CrmRecord:
    """A valid record of the list with ``consent`` and ``media_type``; RecordError otherwise."""
    if not isinstance(obj, Mapping):
        raise RecordError(f"a record must be an object, got {type(obj).__name__}")
    if "(row)" in obj:
        raise RecordError(str(obj["(row)"]))
    if not _ALLOWED.issuperset(obj):
        unknown = sorted(str(k) for k in obj if k not in _ALLOWED)
        raise RecordError(f"unknown field(s) {', '.join(map(str, unknown))}")
    named = _text(obj, "consent", required=False)
    if named is not None and named != consent:
        raise RecordError(f"consent {named!r} is not this list's consent {consent!r}", "consent")
    media = _text(obj, "media_type", required=True)
    if media != media_type:
        raise RecordError(
            f"media type {media!r} is not this list's media type {media_type!r}", "media_type"
        )
    customer = parse_customer({k: obj[k] for k in _CUSTOMER if k in obj})
    if media_type == "email" and not customer.email:
        raise RecordError("is required for an email list", "email")
    return CrmRecord(
        customer_id=customer.id,
        email=customer.email.lower() if customer.email else None,
        timezone=customer.timezone,
        attributes=(
            json.dumps(customer.attributes, separators=(",", ":"), sort_keys=True)
            if customer.attributes
            else "{}"
        ),
        entity_type=str(_text(obj, "entity_type", required=True)),
        entity_id=str(_text(obj, "entity_id", required=True)),
        opt_in_id=str(_text(obj, "opt_in_id", required=True)),
        opted_in_at=_moment(obj.get("opted_in_at")),
        description=_text(obj, "description", required=False),
        media_type=media,
    )
