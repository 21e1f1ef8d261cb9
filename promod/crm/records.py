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
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from promod.customers.records import (
    ATTR_NAME_PATTERN,
    EMAIL_PATTERN,
    MAX_EMAIL_LENGTH,
    MAX_ID_LENGTH,
    RecordError,
    parse_customer,
)

__all__ = ["CrmRecord", "RecordError", "parse_page", "parse_record"]

TECHNICAL = ("opt_in_id", "description", "media_type", "entity_type", "entity_id")
_OPTIONAL = ("consent", "opted_in_at")
_CUSTOMER = ("id", "email", "timezone", "attributes")
_MAX_TEXT = 256
_ALLOWED = frozenset((*TECHNICAL, *_OPTIONAL, *_CUSTOMER))
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The fast path's checks: text it accepts holds no control character or surrogate.
_UNCLEAN = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_EMAIL = re.compile(EMAIL_PATTERN)
_ATTR_NAME = re.compile(ATTR_NAME_PATTERN)


class CrmRecord(NamedTuple):
    """A valid record, in the column order of ``crm_staged`` (after its run)."""

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
        return (run_id, *self)


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


@lru_cache(maxsize=1024)
def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _plain(obj: Any, consent: str, media_type: str) -> CrmRecord | None:
    """The record when it is plainly valid (plain strings, nothing to fix); else None.

    A million-row refresh is mostly such records: this checks the rules of
    :func:`_checked` directly instead of through the customer model. Anything it is
    not sure of (another type, an odd character, a bad value) gets None, and the
    full check decides and names the field; it never accepts what that refuses.
    """
    if type(obj) is not dict or not _ALLOWED.issuperset(obj):
        return None
    get = obj.get
    customer_id, media = get("id"), get("media_type")
    entity_type, entity_id, opt_in_id = get("entity_type"), get("entity_id"), get("opt_in_id")
    if (
        type(customer_id) is not str
        or media != media_type
        or type(entity_type) is not str
        or type(entity_id) is not str
        or type(opt_in_id) is not str
    ):
        return None
    email, description, named, zone = (
        get("email"),
        get("description"),
        get("consent"),
        get("timezone"),
    )
    texts = [customer_id, media, entity_type, entity_id, opt_in_id]
    for value in (email, description, named, zone):
        if value is not None:
            if type(value) is not str:
                return None
            texts.append(value)
    if _UNCLEAN.search("".join(texts)):
        return None
    entity_type, entity_id, opt_in_id = entity_type.strip(), entity_id.strip(), opt_in_id.strip()
    if (
        not entity_type
        or not entity_id
        or not opt_in_id
        or len(entity_type) > _MAX_TEXT
        or len(entity_id) > _MAX_TEXT
        or len(opt_in_id) > _MAX_TEXT
        or named not in (None, "", consent)
        or not customer_id
        or len(customer_id) > MAX_ID_LENGTH
        or customer_id != customer_id.strip()
    ):
        return None
    if description is not None:
        description = description.strip() if description else None
        if description is not None and len(description) > _MAX_TEXT:
            return None
    if not email:
        if media_type == "email":
            return None
        email = None
    elif len(email) > MAX_EMAIL_LENGTH or _EMAIL.fullmatch(email) is None:
        return None
    else:
        email = email.lower()
    if zone == "":
        zone = None
    elif zone is not None and (len(zone) > 64 or not _known_zone(zone)):
        return None
    attributes = "{}"
    if "attributes" in obj:
        given = obj["attributes"]
        if type(given) is not dict:
            return None
        for name, value in given.items():
            if (
                type(name) is not str
                or _ATTR_NAME.fullmatch(name) is None
                or type(value) is not str
                or _UNCLEAN.search(value)
            ):
                return None
        if given:
            attributes = json.dumps(given, separators=(",", ":"), sort_keys=True)
    moment = get("opted_in_at")
    try:
        opted_in_at = None if moment is None else _moment(moment)
    except RecordError:
        return None
    return CrmRecord(
        customer_id,
        email,
        zone,
        attributes,
        entity_type,
        entity_id,
        opt_in_id,
        opted_in_at,
        description,
        media_type,
    )


def parse_record(obj: Any, *, consent: str, media_type: str) -> CrmRecord:
    """A valid record of the list with ``consent`` and ``media_type``; RecordError otherwise."""
    return _plain(obj, consent, media_type) or _checked(obj, consent, media_type)


def parse_page(
    page: Sequence[Any], *, consent: str, media_type: str, first: int = 1
) -> tuple[list[CrmRecord], list[dict[str, Any]]]:
    """The valid records of a page, and the refused ones as ``{"record": N, "message"}``.

    Records are numbered from ``first`` (their number in the whole fetch).
    """
    valid: list[CrmRecord] = []
    refused: list[dict[str, Any]] = []
    keep = valid.append
    for number, obj in enumerate(page, start=first):
        record = _plain(obj, consent, media_type)
        if record is None:
            try:
                record = _checked(obj, consent, media_type)
            except RecordError as bad:
                refused.append({"record": number, "message": str(bad)})
                continue
        keep(record)
    return valid, refused


def _checked(obj: Any, consent: str, media_type: str) -> CrmRecord:
    """Every rule, through the customer model; RecordError naming the first bad field."""
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
