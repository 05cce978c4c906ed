"""Chart data for the console, from ledger.analytics (a rollup, never a scan of transactions), and a
wallet's balance from its own ledger entries.

A chart is `{"x": [unix seconds...], "series": [{"label", "values"}], "unit"}`: the shape uPlot draws,
with one value per x in each series (null where a currency had nothing in that bucket). The page
embeds it as JSON in the chart element's `data-points`; static/console.js draws it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from ledger import analytics
from ledger.analytics import ActivityPoint
from models import LedgerEntry
from web.console.format import major_units

# ?range= on the overview: how far back, and the bucket size that keeps a chart to ~100 points or fewer.
RANGES = {
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "hour"),
    "30d": (timedelta(days=30), "day"),
    "90d": (timedelta(days=90), "day"),
}
DEFAULT_RANGE = "24h"


@dataclass(frozen=True)
class Activity:
    range: str
    volume: dict[str, Any]
    success: dict[str, Any]
    latency: dict[str, Any]
    completed: int
    failed: int


def _chart(
    unit: str,
    x: Sequence[float],
    series: list[tuple[str, list[float | None]]],
    x_range: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """`x_range`: the span the x axis shows whatever the data (left to itself, uPlot stretches one
    bucket over years)."""
    chart = {"unit": unit, "x": list(x), "series": [{"label": label, "values": values} for label, values in series]}
    if x_range is not None:
        chart["x_range"] = list(x_range)
    return chart


def _per_currency(
    points: Sequence[ActivityPoint], xs: list[int], value: Callable[[ActivityPoint], float | None]
) -> list[tuple[str, list[float | None]]]:
    at = {x: i for i, x in enumerate(xs)}
    series: dict[str, list[float | None]] = {}
    for point in points:
        values = series.setdefault(point.currency, [None] * len(xs))
        values[at[int(point.bucket_start.timestamp())]] = value(point)
    return sorted(series.items())


def _success_rate(point: ActivityPoint) -> float | None:
    settled = point.completed + point.failed
    return None if settled == 0 else round(100 * point.completed / settled, 2)


def activity(session: Session, organization_id: uuid.UUID | None, range_name: str | None) -> Activity:
    """Volume, success rate and settle latency over the range, per currency; `organization_id`
    None for every organisation (operators)."""
    name = range_name if range_name in RANGES else DEFAULT_RANGE
    span, granularity = RANGES[name]
    until = datetime.now(UTC)
    points = analytics.activity_series(
        session, organization_id=organization_id, since=until - span, until=until, granularity=granularity
    )
    xs = sorted({int(p.bucket_start.timestamp()) for p in points})
    shown = ((until - span).timestamp(), until.timestamp())
    latency = [
        (f"{currency} {label}", values)
        for label, pick in (("p50", lambda p: p.latency_p50_ms), ("p95", lambda p: p.latency_p95_ms))
        for currency, values in _per_currency(points, xs, pick)
    ]
    return Activity(
        range=name,
        volume=_chart("money", xs, _per_currency(points, xs, lambda p: major_units(p.volume, p.currency)), shown),
        success=_chart("percent", xs, _per_currency(points, xs, _success_rate), shown),
        latency=_chart("ms", xs, latency, shown),
        completed=sum(p.completed for p in points),
        failed=sum(p.failed for p in points),
    )


def wallet_balance(entries: Sequence[LedgerEntry], currency: str) -> dict[str, Any]:
    """The wallet's balance after each of its entries (newest first in, oldest first out)."""
    ordered = sorted(entries, key=lambda e: (e.created_at, e.wallet_version))
    xs: list[float] = []
    values: list[float | None] = []
    for entry in ordered:
        x = entry.created_at.timestamp()
        if xs and xs[-1] >= x:
            x = xs[-1] + 0.001  # uPlot needs x strictly increasing; entries of one instant stay in order
        xs.append(x)
        values.append(major_units(entry.balance_after, currency))
    # An hour either side of a lone entry, so its point sits at its own time.
    lone = (xs[0] - 3600, xs[0] + 3600) if len(xs) == 1 else None
    return _chart("money", xs, [(currency, values)], lone)
