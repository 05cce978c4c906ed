"""Activity over time for the console's charts: settled intents per hour or day, per currency.

Counts, completed volume (minor units) and settle latency (accepted → settled, completed intents),
bucketed by when each intent was settled (`completed_at`), in UTC.

The intents counted are those a customer makes: transfers, deposits, withdrawals, refunds and
captures. A HOLD is left out (it moves no money; its capture counts), as are CLEARING and
SETTLEMENT postings (the bookkeeping between organisations a transfer leaves behind: counting them
would count the transfer again). A cross-organisation transfer counts for the organisation that
made it, its source's (`transactions.organization_id`), never for its destination's.

No chart scans `transactions`. Where an intent becomes final (the settlement engine, a review's
rejection or expiry) the same transaction appends its deltas to `activity_deltas`, one grouped
INSERT per batch and no row anyone else updates; beat folds them into `activity_rollup`
(`fold_deltas`). Readers add rollup and unfolded deltas in one statement, so they are exact at any
moment, folded or not (models/activity.py).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from models.activity import LATENCY_BUCKETS, LATENCY_COLUMNS
from models.advisory_locks import AdvisoryLock

GRANULARITIES = ("hour", "day")
COUNTED_TYPES = ("TRANSFER", "DEPOSIT", "WITHDRAWAL", "REFUND", "CAPTURE")
# Latency bucket k >= 1 holds [2^((k-1)/2), 2^(k/2)) ms; bucket 0 anything under 1 ms, the last
# anything from 2^23 ms (2.3 hours) up. Two buckets per doubling: an estimate is off by at most a
# factor 2^(1/4) (19 %) within its bucket.
BUCKETS_PER_DOUBLING = 2


@dataclass(frozen=True)
class ActivityPoint:
    """One bucket of one currency."""

    bucket_start: datetime
    currency: str
    completed: int
    failed: int
    volume: int  # minor units, completed only
    latency_p50_ms: float | None
    latency_p95_ms: float | None


@dataclass(frozen=True)
class OrganizationActivity:
    organization_id: uuid.UUID
    currency: str
    completed: int
    failed: int
    volume: int


# --- writing -------------------------------------------------------------------------------------

_TYPES = ", ".join(f"'{t}'" for t in COUNTED_TYPES)
_COUNTERS = ("completed", "failed", "volume", "latency_sum_us", *LATENCY_COLUMNS)
_COUNTER_LIST = ", ".join(_COUNTERS)
# In float8, not numeric: cheaper per row, and microseconds stay exact in float8 for any latency.
_LATENCY_US = "greatest(0, round(date_part('epoch', completed_at - created_at) * 1000000)::bigint)"
_BUCKET = (
    f"least({LATENCY_BUCKETS - 1}, greatest(0, floor({BUCKETS_PER_DOUBLING} * ln(greatest(lat_us::float8 / 1000, 0.5))"
    " / ln(2))::int + 1))"
)


def _deltas_of(where: str) -> str:
    """The delta rows of the final, counted transactions matching `where`: one per (organisation,
    currency, hour settled). Grouped by latency bucket first, then turned into columns: the 48
    filtered sums then run over a few rows per hour, not over every transaction."""
    histogram = ", ".join(
        f"coalesce(sum(n) FILTER (WHERE status = 'COMPLETED' AND b = {k}), 0)::int" for k in range(LATENCY_BUCKETS)
    )
    return f"""
        SELECT organization_id, currency, hour,
               coalesce(sum(n) FILTER (WHERE status = 'COMPLETED'), 0)::int,
               coalesce(sum(n) FILTER (WHERE status = 'FAILED'), 0)::int,
               coalesce(sum(amount) FILTER (WHERE status = 'COMPLETED'), 0)::bigint,
               coalesce(sum(lat_us) FILTER (WHERE status = 'COMPLETED'), 0)::bigint,
               {histogram}
          FROM (SELECT organization_id, currency, date_trunc('hour', completed_at, 'UTC') AS hour, status,
                       {_BUCKET} AS b, count(*) AS n, sum(amount) AS amount, sum(lat_us) AS lat_us
                  FROM (SELECT organization_id, currency, status, amount, completed_at, {_LATENCY_US} AS lat_us
                          FROM transactions
                         WHERE {where} AND status IN ('COMPLETED', 'FAILED') AND type IN ({_TYPES})) AS t
                 GROUP BY 1, 2, 3, 4, 5) AS s
         GROUP BY organization_id, currency, hour
    """


# Driver SQL (binary array parameter, as the engine's statements: ledger/settlement/posting.py).
_RECORD = f"""
    INSERT INTO activity_deltas (organization_id, currency, hour, {_COUNTER_LIST})
    {_deltas_of("id = ANY(%(ids)b)")}
"""


def record_settled(session: Session, transaction_ids: Sequence[uuid.UUID]) -> None:
    """Append the deltas of these transactions, just made final in this database transaction.

    One set-based statement, whatever their number; those not counted (HOLD, CLEARING, …) or not
    final add nothing. Call it exactly once per intent reaching COMPLETED or FAILED."""
    if transaction_ids:
        session.connection().exec_driver_sql(_RECORD, {"ids": list(transaction_ids)})


def _fold(limit: int | None) -> str:
    # Both granularities from the same moved rows; bounded by `limit` so a backlog folds in steps.
    taken = "" if limit is None else f"WHERE ctid = ANY(ARRAY(SELECT ctid FROM activity_deltas LIMIT {int(limit)}))"
    sums = ", ".join(f"sum({c})" for c in _COUNTERS)
    updates = ", ".join(f"{c} = activity_rollup.{c} + excluded.{c}" for c in _COUNTERS)
    return f"""
        WITH moved AS (DELETE FROM activity_deltas {taken} RETURNING *),
        folded AS (
            INSERT INTO activity_rollup (granularity, organization_id, bucket_start, currency, {_COUNTER_LIST})
            SELECT 'hour', organization_id, hour, currency, {sums} FROM moved GROUP BY organization_id, hour, currency
             UNION ALL
            SELECT 'day', organization_id, date_trunc('day', hour, 'UTC'), currency, {sums}
              FROM moved GROUP BY organization_id, date_trunc('day', hour, 'UTC'), currency
            ON CONFLICT (granularity, organization_id, bucket_start, currency) DO UPDATE SET {updates}
        )
        SELECT count(*) FROM moved
    """


FOLD_ROWS_MAX = 50_000
_FOLD = text(_fold(FOLD_ROWS_MAX))
_FOLD_LOCK = text(f"SELECT pg_try_advisory_xact_lock({int(AdvisoryLock.ACTIVITY_FOLD)})")


def fold_deltas(session: Session) -> int | None:
    """Move up to FOLD_ROWS_MAX delta rows into the rollup, in the caller's transaction: deleted and
    added in one statement, so a crash leaves both or neither, and a fold run twice adds nothing
    twice. None if another fold holds the lock (it will fold what this one would have); else the
    number of delta rows folded."""
    if not session.execute(_FOLD_LOCK).scalar_one():
        return None
    return int(session.execute(_FOLD).scalar_one())


# Deltas for every final transaction: a scan, for rebuilding after emptying both tables (and for
# data written behind the engine's back, as the bench's). Plain SQL, no parameters: run it on a
# connection without the application's statement timeout (a million transactions take longer).
RECORD_ALL_SQL = f"""
    INSERT INTO activity_deltas (organization_id, currency, hour, {_COUNTER_LIST})
    {_deltas_of("true")}
"""


# --- reading -------------------------------------------------------------------------------------


def _floor(moment: datetime, granularity: str) -> datetime:
    moment = moment.astimezone(UTC)
    if granularity == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceil(moment: datetime, granularity: str) -> datetime:
    floor = _floor(moment, granularity)
    return floor if floor == moment else floor + (timedelta(days=1) if granularity == "day" else timedelta(hours=1))


def _summed(expression: str = "") -> str:
    return ", ".join(f"sum({c}){expression}" for c in _COUNTERS)


def _series_sql(by_organization: bool) -> str:
    org = "AND organization_id = :org" if by_organization else ""
    columns = ", ".join(_COUNTERS)
    return f"""
        SELECT bucket_start, currency, {_summed("::bigint")}
          FROM (SELECT bucket_start, currency, {columns} FROM activity_rollup
                 WHERE granularity = :granularity AND bucket_start >= :since AND bucket_start < :until {org}
                 UNION ALL
                SELECT date_trunc(:granularity, hour, 'UTC'), currency, {columns} FROM activity_deltas
                 WHERE hour >= :since AND date_trunc(:granularity, hour, 'UTC') < :until {org}) AS b
         GROUP BY bucket_start, currency
         ORDER BY bucket_start, currency
    """


_SERIES = text(_series_sql(by_organization=False))
_SERIES_OF_ORGANIZATION = text(_series_sql(by_organization=True))


def _check_granularity(granularity: str) -> None:
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")


def bucket_bounds_ms(k: int) -> tuple[float, float]:
    """Latency bucket k's lower and upper bound, in ms (the last one's upper bound is infinite)."""
    lower = 0.0 if k == 0 else 2 ** ((k - 1) / BUCKETS_PER_DOUBLING)
    upper = math.inf if k == LATENCY_BUCKETS - 1 else 2 ** (k / BUCKETS_PER_DOUBLING)
    return lower, upper


def percentile_ms(histogram: Sequence[int], q: float) -> float | None:
    """The q-quantile (0 < q < 1) of the latencies counted in `histogram`, estimated within its bucket:
    the bucket's geometric middle (its lower bound for the last, open bucket; half a ms for the first)."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for k, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            lower, upper = bucket_bounds_ms(k)
            if k == 0:
                return 0.5
            return lower if math.isinf(upper) else math.sqrt(lower * upper)
    raise AssertionError("rank within total")  # pragma: no cover


def _point(row: Sequence[Any]) -> ActivityPoint:
    histogram = [int(v) for v in row[6 : 6 + LATENCY_BUCKETS]]
    return ActivityPoint(
        bucket_start=row[0],
        currency=row[1],
        completed=int(row[2]),
        failed=int(row[3]),
        volume=int(row[4]),
        latency_p50_ms=percentile_ms(histogram, 0.5),
        latency_p95_ms=percentile_ms(histogram, 0.95),
    )


def activity_series(
    session: Session,
    *,
    organization_id: uuid.UUID | None,
    since: datetime,
    until: datetime,
    granularity: str = "hour",
) -> list[ActivityPoint]:
    """Buckets starting in [since rounded down to the granularity, until), oldest first, then by
    currency; only buckets with activity. `organization_id` None: every organisation (operators)."""
    _check_granularity(granularity)
    parameters: dict[str, Any] = {"granularity": granularity, "since": _floor(since, granularity), "until": until}
    statement = _SERIES
    if organization_id is not None:
        statement, parameters["org"] = _SERIES_OF_ORGANIZATION, organization_id
    return [_point(row) for row in session.execute(statement, parameters).all()]


# Whole days from the day rows, the hours at either end from hour rows: a month is ~30 rows per
# organisation and currency, not ~720.
_BY_ORGANIZATION = text(
    """
    SELECT organization_id, currency, sum(completed)::bigint, sum(failed)::bigint, sum(volume)::bigint
      FROM (SELECT organization_id, currency, completed, failed, volume FROM activity_rollup
             WHERE granularity = 'day' AND bucket_start >= :days_from AND bucket_start < :days_until
             UNION ALL
            SELECT organization_id, currency, completed, failed, volume FROM activity_rollup
             WHERE granularity = 'hour' AND bucket_start >= :since AND bucket_start < :until
               AND NOT (bucket_start >= :days_from AND bucket_start < :days_until)
             UNION ALL
            SELECT organization_id, currency, completed, failed, volume FROM activity_deltas
             WHERE hour >= :since AND hour < :until) AS b
     GROUP BY organization_id, currency
     ORDER BY organization_id, currency
    """
)


def activity_by_organization(session: Session, *, since: datetime, until: datetime) -> list[OrganizationActivity]:
    """Each organisation's totals per currency over the hours starting in [since's hour, until)."""
    since_hour, until_hour = _floor(since, "hour"), _ceil(until, "hour")
    days_from, days_until = _ceil(since_hour, "day"), _floor(until_hour, "day")
    if days_from >= days_until:
        days_from = days_until = since_hour  # no whole day: hour rows only
    rows = session.execute(
        _BY_ORGANIZATION,
        {"since": since_hour, "until": until_hour, "days_from": days_from, "days_until": days_until},
    ).all()
    return [
        OrganizationActivity(
            organization_id=row[0], currency=row[1], completed=int(row[2]), failed=int(row[3]), volume=int(row[4])
        )
        for row in rows
    ]
