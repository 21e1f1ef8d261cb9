"""The live trigger index: which running live-action campaigns listen to which event names.

An incoming event is looked up by its name in three maps — event triggers, the
``after`` of inaction triggers, their ``missing`` — so matching costs nothing for the
campaigns that do not listen to it. The index is rebuilt from the store whenever the
set of (campaign, version, open run) changes; parsed specs are kept between rebuilds::

    index = IndexCache().current(tx)            # inside a store transaction
    for campaign in index.on_event.get("purchase", ()):
        campaign.accepts(event_ts, now)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from promod.campaigns.spec import CampaignSpec, parse_spec
from promod.live import store
from promod.store.seam import Transaction

__all__ = ["IndexCache", "LiveCampaign", "TriggerIndex"]


@dataclass(frozen=True)
class LiveCampaign:
    """A running live-action campaign and its open run (where its targets go)."""

    campaign_id: str
    version: int
    run_id: int
    start: float  # the run's start: events before it never fire
    end: float | None  # schedule.end
    spec: CampaignSpec

    def accepts(self, event_ts: float, now: float) -> bool:
        """An event at ``event_ts`` processed at ``now`` falls in the campaign's active time."""
        if event_ts < math.floor(self.start):
            return False
        return self.end is None or (event_ts < self.end and now < self.end)


@dataclass
class TriggerIndex:
    """Running live campaigns by the event names their triggers read."""

    campaigns: dict[str, LiveCampaign] = field(default_factory=dict)
    on_event: dict[str, list[LiveCampaign]] = field(default_factory=dict)
    on_after: dict[str, list[LiveCampaign]] = field(default_factory=dict)
    on_missing: dict[str, list[LiveCampaign]] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        """Every event name some trigger reads."""
        return {*self.on_event, *self.on_after, *self.on_missing}

    @classmethod
    def build(cls, campaigns: list[LiveCampaign]) -> TriggerIndex:
        index = cls()
        for campaign in campaigns:
            trigger = campaign.spec.trigger
            if trigger is None:
                continue
            index.campaigns[campaign.campaign_id] = campaign
            if trigger.rule is not None:
                index.on_event.setdefault(trigger.rule.event, []).append(campaign)
            elif trigger.after is not None and trigger.missing is not None:
                index.on_after.setdefault(trigger.after, []).append(campaign)
                index.on_missing.setdefault(trigger.missing, []).append(campaign)
        return index


class IndexCache:
    """The current :class:`TriggerIndex`, rebuilt only when the running set changes.

    Call :meth:`current` inside each transaction that matches events, so the index
    is exactly what the store says at that moment (launches, pauses, stops, ends).
    """

    def __init__(self) -> None:
        self._key: tuple[tuple[str, int, int, float], ...] | None = None
        self._index = TriggerIndex()
        self._specs: dict[tuple[str, int], CampaignSpec] = {}

    def current(self, tx: Transaction) -> TriggerIndex:
        key = tuple(store.live_runs(tx))
        if key == self._key:
            return self._index
        campaigns: list[LiveCampaign] = []
        seen: set[str] = set()
        for campaign_id, version, run_id, started_at in key:
            if campaign_id in seen:  # one open run per campaign; take the newest
                campaigns = [c for c in campaigns if c.campaign_id != campaign_id]
            seen.add(campaign_id)
            spec = self._spec(tx, campaign_id, version)
            end = spec.schedule.end.timestamp() if spec.schedule.end is not None else None
            campaigns.append(LiveCampaign(campaign_id, version, run_id, started_at, end, spec))
        self._index = TriggerIndex.build(campaigns)
        self._key = key
        return self._index

    def _spec(self, tx: Transaction, campaign_id: str, version: int) -> CampaignSpec:
        spec = self._specs.get((campaign_id, version))
        if spec is None:
            data = json.loads(store.version_spec(tx, campaign_id, version))
            spec = parse_spec(data, default_timezone=data.get("timezone", "UTC"))
            self._specs[(campaign_id, version)] = spec
        return spec
