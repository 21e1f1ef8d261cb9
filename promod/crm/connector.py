"""The CRM connector protocol, its records and errors, and making connectors from config.

A connector *type* (registered through ``promod_register_crm_connectors``) has a
``type`` name, an ``options_model`` (a :class:`promod.schema.Model`) for the keys of
its ``[crm.NAME]`` section, and ``create(name, options)`` that returns a
:class:`Connector` from the validated options (a mapping)::

    class MyCrm:
        type = "mycrm"
        options_model = MyOptions

        def create(self, name: str, options: Mapping[str, Any]) -> Connector: ...

A connector streams the recipients of its list (``fetch`` yields pages of plain
mappings, checked by :func:`promod.crm.records.parse_record`) and accepts suppression and
response records (``export_suppressions``, ``export_responses``). It raises
:class:`TemporaryCrmError` for what a retry may cure (the CRM down, 5xx, 429) and
:class:`PermanentCrmError` otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Connector",
    "ConnectorConfigError",
    "CrmError",
    "PermanentCrmError",
    "ResponseRecord",
    "SuppressionRecord",
    "TemporaryCrmError",
    "build_connectors",
]


class CrmError(Exception):
    """A connector call failed."""


class TemporaryCrmError(CrmError):
    """Worth retrying: the CRM is down, overloaded (429) or answered 5xx.

    ``retry_after`` is the pause the CRM asked for, in seconds, when it said.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentCrmError(CrmError):
    """A retry will not help (refused credentials, a malformed answer, a missing file)."""


@dataclass(frozen=True)
class SuppressionRecord:
    """A bounce or unsubscription to report to the CRM, against the CRM's entity."""

    reason: str  # bounced | unsubscribed | complained
    email: str
    customer_id: str | None
    entity_type: str
    entity_id: str
    consent: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "email": self.email,
            "customer_id": self.customer_id,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "consent": self.consent,
            "at": self.at,
        }


@dataclass(frozen=True)
class ResponseRecord:
    """What became of one recipient in one campaign (or outside any campaign)."""

    response: str  # delivered | bounced_hard | bounced_soft | unsubscribed | redeemed | granted
    customer_id: str
    entity_type: str
    entity_id: str
    campaign_id: str | None
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "response": self.response,
            "customer_id": self.customer_id,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "campaign_id": self.campaign_id,
            "at": self.at,
        }


@runtime_checkable
class Connector(Protocol):
    """One configured CRM connection."""

    name: str

    def fetch(self) -> AsyncIterator[Sequence[Mapping[str, Any]]]:
        """Every recipient record of the list, streamed page by page, in the CRM's order."""
        ...

    async def export_suppressions(self, records: Sequence[SuppressionRecord]) -> None: ...

    async def export_responses(self, records: Sequence[ResponseRecord], *, day: str) -> None: ...

    async def close(self) -> None: ...


class ConnectorConfigError(Exception):
    """A ``[crm.NAME]`` section its connector type refuses; ``key`` names the option."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def build_connectors(crm: Mapping[str, Any], types: Mapping[str, Any]) -> dict[str, Connector]:
    """One connector per ``[crm.NAME]``; ConnectorConfigError naming the section.

    The options were validated by the type's ``options_model`` when the config was
    read (promod.plugins.options); ``create`` gets them as a mapping.
    """
    made: dict[str, Connector] = {}
    for name, cfg in crm.items():
        kind = types.get(cfg.connector)
        if kind is None:
            known = ", ".join(sorted(types)) or "none"
            raise ConnectorConfigError(
                f"crm.{name}.connector",
                f"unknown connector type {cfg.connector!r} (known: {known})",
            )
        try:
            made[name] = kind.create(name, dict(cfg.options))
        except ConnectorConfigError:
            raise
        except Exception as exc:
            raise ConnectorConfigError(
                f"crm.{name}", f"connector refused its options: {exc}"
            ) from exc
    return made
