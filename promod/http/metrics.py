"""``GET /metrics``: the Prometheus text format (0.0.4), written without a client library.

Request latency is observed by the HTTP app (:class:`LatencyHistogram`, by route
template, method and status); everything else is read when scraped: grants and
refusals by reason, spend per campaign, outbox depth and failures from the store,
actor states and restarts from the supervisor::

    text = await render_metrics(app, histogram)
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from promod.crm import store as crm_store
from promod.units import format_money

__all__ = ["BUCKETS", "LatencyHistogram", "MetricsWriter", "render_metrics"]

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

_Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: _Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _number(value: float | int | str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    return str(value)


class MetricsWriter:
    """Collects metric families and renders them in the text exposition format."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[_Labels, float | int | str]],
        *,
        suffix: str = "",
    ) -> None:
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self._lines.append(f"{name}{suffix}{_labels(labels)} {_number(value)}")

    def raw(self, lines: Iterable[str]) -> None:
        self._lines.extend(lines)

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


class LatencyHistogram:
    """``promod_http_request_duration_seconds`` by route, method and status."""

    name = "promod_http_request_duration_seconds"

    def __init__(self, buckets: Sequence[float] = BUCKETS) -> None:
        self.buckets = tuple(buckets)
        # labels -> (per-bucket counts (not cumulative), count, sum)
        self._series: dict[_Labels, tuple[list[int], list[float]]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (("route", route), ("method", method), ("status", str(status)))
        series = self._series.get(key)
        if series is None:
            series = ([0] * (len(self.buckets) + 1), [0.0])
            self._series[key] = series
        counts, total = series
        for i, bound in enumerate(self.buckets):
            if seconds <= bound:
                counts[i] += 1
                break
        else:
            counts[-1] += 1
        total[0] += seconds

    def lines(self) -> list[str]:
        out = [
            f"# HELP {self.name} HTTP request latency by route template, method and status.",
            f"# TYPE {self.name} histogram",
        ]
        for labels in sorted(self._series):
            counts, total = self._series[labels]
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                le = (("le", "+Inf" if math.isinf(bound) else repr(bound)),)
                out.append(f"{self.name}_bucket{_labels(labels + le)} {running}")
            out.append(f"{self.name}_sum{_labels(labels)} {total[0]!r}")
            out.append(f"{self.name}_count{_labels(labels)} {running}")
        return out


def _exponent(currency: str | None) -> int:
    from promod.campaigns.spec import currency_exponent

    return currency_exponent(currency)


def _store_metrics(conn: sqlite3.Connection) -> dict[str, list[Any]]:
    """Every store-backed series in one read transaction (missing tables give nothing)."""
    queries = {
        "grants": "SELECT campaign_id, provider, state, count(*) FROM grants"
        " GROUP BY campaign_id, provider, state",
        "spend": "SELECT campaign_id, currency, sum(value_minor) FROM grants"
        " WHERE state IN ('reserved', 'issued') GROUP BY campaign_id, currency",
        "refusals": "SELECT r.campaign_id, coalesce(t.reason, 'unknown'), count(*)"
        " FROM run_targets t JOIN runs r ON r.id = t.run_id WHERE t.status = 'refused'"
        " GROUP BY r.campaign_id, t.reason",
        "outbox": "SELECT state, count(*) FROM outbox GROUP BY state",
        "deliveries": "SELECT kind, channel, state, count(*) FROM deliveries"
        " GROUP BY kind, channel, state",
        "wallet": "SELECT coalesce(sum(points), 0) FROM wallet_balances",
    }
    out: dict[str, list[Any]] = {}
    for key, sql in queries.items():
        try:
            out[key] = [tuple(row) for row in conn.execute(sql)]
        except sqlite3.OperationalError:
            out[key] = []
    return out


# Delivery states that mean it failed for good (dead letters).
_FAILED_STATES = frozenset({"dead"})


async def render_metrics(app: Any, histogram: LatencyHistogram) -> str:
    """The whole ``/metrics`` answer for ``app``."""
    data = await app.db.run_sync(_store_metrics, write=False)
    w = MetricsWriter()
    w.family(
        "promod_up",
        "gauge",
        "1 while the daemon is ready and healthy.",
        [((), int(bool(app.ready and not app.shutting_down and _healthy(app))))],
    )
    w.family(
        "promod_grants",
        "gauge",
        "Grants by campaign, reward provider and state.",
        [((("campaign", c), ("provider", p), ("state", s)), n) for c, p, s, n in data["grants"]],
    )
    w.family(
        "promod_refusals",
        "gauge",
        "Targets refused a reward, by campaign and reason.",
        [((("campaign", c), ("reason", r)), n) for c, r, n in data["refusals"]],
    )
    w.family(
        "promod_campaign_spend",
        "gauge",
        "Value of reserved and issued grants per campaign, in the currency's units.",
        [
            (
                (("campaign", c), ("currency", cur or "")),
                format_money(int(total or 0), _exponent(cur)),
            )
            for c, cur, total in data["spend"]
        ],
    )
    states = {str(s): int(n) for s, n in data["outbox"]}
    w.family(
        "promod_outbox_events",
        "gauge",
        "Outbox events by state.",
        [((("state", s),), n) for s, n in sorted(states.items())],
    )
    deliveries = [(str(k), str(c), str(s), int(n)) for k, c, s, n in data["deliveries"]]
    w.family(
        "promod_deliveries",
        "gauge",
        "Notifier deliveries (one per event and channel) by kind, channel and state.",
        [((("kind", k), ("channel", c), ("state", s)), n) for k, c, s, n in deliveries],
    )
    w.family(
        "promod_outbox_depth",
        "gauge",
        "Work waiting to leave: outbox events not yet fanned out plus pending deliveries.",
        [((), states.get("pending", 0) + sum(n for _, _, s, n in deliveries if s == "pending"))],
    )
    w.family(
        "promod_outbox_failures",
        "gauge",
        "Deliveries that failed for good (dead letters).",
        [((), sum(n for _, _, s, n in deliveries if s in _FAILED_STATES))],
    )
    w.family(
        "promod_wallet_points",
        "gauge",
        "Wallet points held by all customers.",
        [((), int(data["wallet"][0][0]) if data["wallet"] else 0)],
    )
    children = app.supervisor.children_info() if app.supervisor is not None else []
    w.family(
        "promod_actor_restarts_total",
        "counter",
        "Restarts of each supervised actor or server since the daemon started.",
        [((("actor", c["name"]),), int(c.get("restarts", 0))) for c in children],
    )
    w.family(
        "promod_actor_up",
        "gauge",
        "1 while the supervised child is running.",
        [((("actor", c["name"]),), int(c.get("state") == "running")) for c in children],
    )
    crm = await app.db.run_sync(_crm_metrics, write=False)
    w.family(
        "promod_crm_last_success_timestamp",
        "gauge",
        "Unix time each CRM connector's last refresh was applied.",
        [((("connector", str(c)),), float(at)) for c, at, *_ in crm if at is not None],
    )
    w.family(
        "promod_crm_rows",
        "gauge",
        "Rows of each CRM connector's last applied refresh, by kind.",
        [
            ((("connector", str(c)), ("kind", kind)), int(n or 0))
            for c, _, fetched, members, invalid, suppressed in crm
            for kind, n in (
                ("fetched", fetched),
                ("members", members),
                ("invalid", invalid),
                ("suppressed", suppressed),
            )
        ],
    )
    w.raw(histogram.lines())
    return w.text()


def _crm_metrics(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    try:
        return crm_store.metrics_rows(conn)
    except sqlite3.OperationalError:  # an older schema
        return []


def _healthy(app: Any) -> bool:
    return app.supervisor is None or bool(app.supervisor.healthy)
