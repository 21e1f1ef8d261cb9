"""``GET /metrics``: Prometheus text built with ``prometheus_client`` collectors.

Request latency is a ``prometheus_client`` :class:`~prometheus_client.Histogram` the
HTTP app observes (by route template, method and status), kept in the app's own
registry across HTTP restarts; everything else is read when scraped, in one store
transaction, and handed to a :class:`Snapshot` collector: grants and refusals by
reason, spend per campaign, outbox depth and failures, actor states and restarts::

    metrics = http_metrics(app)                       # the app's registry and histogram
    metrics.latency.labels(route, "GET", "200").observe(0.003)
    text = await render_metrics(app, metrics)        # bytes in the text format 0.0.4
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from promod.http.store_metrics import crm_metrics_sync, store_metrics_sync

if TYPE_CHECKING:
    from promod.app import App

__all__ = ["BUCKETS", "HttpMetrics", "Snapshot", "http_metrics", "render_metrics"]

BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass
class HttpMetrics:
    """The app's metrics registry and its request-latency histogram."""

    registry: CollectorRegistry
    latency: Histogram


def http_metrics(app: App) -> HttpMetrics:
    """The app's :class:`HttpMetrics` (kept as ``app.http_metrics`` across HTTP restarts)."""
    metrics = app.http_metrics
    if metrics is None:
        # No ``_created`` series: a scrape shows counts, not when a label set first appeared.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        registry = CollectorRegistry(auto_describe=True)
        latency = Histogram(
            "promod_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["route", "method", "status"],
            buckets=BUCKETS,
            registry=registry,
        )
        metrics = HttpMetrics(registry, latency)
        app.http_metrics = metrics
    return metrics


def _exponent(currency: str | None) -> int:
    from promod.campaigns.spec import currency_exponent

    return currency_exponent(currency)


# Delivery states that mean it failed for good (dead letters).
_FAILED_STATES = frozenset({"dead"})


class Snapshot(Collector):
    """The store- and supervisor-backed families of one scrape, read beforehand."""

    def __init__(self, data: dict[str, list[Any]], children: list[dict[str, Any]], up: bool):
        self.data = data
        self.children = children
        self.up = up

    def collect(self) -> Iterator[Metric]:
        data = self.data
        up = GaugeMetricFamily("promod_up", "1 while the daemon is ready and healthy.")
        up.add_metric([], int(self.up))
        yield up

        grants = GaugeMetricFamily(
            "promod_grants",
            "Grants by campaign, reward provider and state.",
            labels=["campaign", "provider", "state"],
        )
        for c, p, s, n in data["grants"]:
            grants.add_metric([str(c), str(p), str(s)], int(n))
        yield grants

        refusals = GaugeMetricFamily(
            "promod_refusals",
            "Targets refused a reward, by campaign and reason.",
            labels=["campaign", "reason"],
        )
        for c, r, n in data["refusals"]:
            refusals.add_metric([str(c), str(r)], int(n))
        yield refusals

        spend = GaugeMetricFamily(
            "promod_campaign_spend",
            "Value of reserved and issued grants per campaign, in the currency's units.",
            labels=["campaign", "currency"],
        )
        for c, cur, total in data["spend"]:
            units = Decimal(int(total or 0)).scaleb(-_exponent(cur))
            spend.add_metric([str(c), cur or ""], float(units))
        yield spend

        states = {str(s): int(n) for s, n in data["outbox"]}
        outbox = GaugeMetricFamily(
            "promod_outbox_events", "Outbox events by state.", labels=["state"]
        )
        for state, n in sorted(states.items()):
            outbox.add_metric([state], n)
        yield outbox

        deliveries = [(str(k), str(c), str(s), int(n)) for k, c, s, n in data["deliveries"]]
        by_state = GaugeMetricFamily(
            "promod_deliveries",
            "Notifier deliveries (one per event and channel) by kind, channel and state.",
            labels=["kind", "channel", "state"],
        )
        for k, c, s, n in deliveries:
            by_state.add_metric([k, c, s], n)
        yield by_state

        pending = states.get("pending", 0) + sum(n for *_, s, n in deliveries if s == "pending")
        yield GaugeMetricFamily(
            "promod_outbox_depth",
            "Work waiting to leave: outbox events not yet fanned out plus pending deliveries.",
            value=pending,
        )
        yield GaugeMetricFamily(
            "promod_outbox_failures",
            "Deliveries that failed for good (dead letters).",
            value=sum(n for *_, s, n in deliveries if s in _FAILED_STATES),
        )
        yield GaugeMetricFamily(
            "promod_wallet_points",
            "Wallet points held by all customers.",
            value=int(data["wallet"][0][0]) if data["wallet"] else 0,
        )

        restarts = CounterMetricFamily(
            "promod_actor_restarts",
            "Restarts of each supervised actor or server since the daemon started.",
            labels=["actor"],
        )
        running = GaugeMetricFamily(
            "promod_actor_up", "1 while the supervised child is running.", labels=["actor"]
        )
        for child in self.children:
            restarts.add_metric([str(child["name"])], int(child.get("restarts", 0)))
            running.add_metric([str(child["name"])], int(child.get("state") == "running"))
        yield restarts
        yield running


class CrmSnapshot(Collector):
    """Each CRM connector's last successful refresh time and its row counts."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def collect(self) -> Iterator[Metric]:
        success = GaugeMetricFamily(
            "promod_crm_last_success_timestamp",
            "Unix time each CRM connector's last refresh was applied.",
            labels=["connector"],
        )
        counts = GaugeMetricFamily(
            "promod_crm_rows",
            "Rows of each CRM connector's last applied refresh, by kind.",
            labels=["connector", "kind"],
        )
        for connector, at, fetched, members, invalid, suppressed in self.rows:
            if at is not None:
                success.add_metric([str(connector)], float(at))
            for kind, n in (
                ("fetched", fetched),
                ("members", members),
                ("invalid", invalid),
                ("suppressed", suppressed),
            ):
                counts.add_metric([str(connector), kind], int(n or 0))
        yield success
        yield counts


async def render_metrics(app: App, metrics: HttpMetrics) -> bytes:
    """The whole ``/metrics`` answer for ``app``."""
    data = await app.db.run(store_metrics_sync, write=False)
    children = app.supervisor.children_info() if app.supervisor is not None else []
    up = bool(app.ready and not app.shutting_down and _healthy(app))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(data, children, up))
    registry.register(CrmSnapshot(await app.db.run(crm_metrics_sync, write=False)))
    return generate_latest(registry) + generate_latest(metrics.registry)


def _healthy(app: App) -> bool:
    return app.supervisor is None or bool(app.supervisor.healthy)
