"""Activity over time for the console's charts: settled intents per hour or day, per currency.

Counts, completed volume (minor units) and settle latency (accepted → settled), bucketed by when
each intent was settled (`completed_at`), in UTC.

The intents counted are those a customer makes: transfers, deposits, withdrawals, refunds and
captures. A HOLD is left out (it moves no money; its capture counts), as are CLEARING and
SETTLEMENT postings (the bookkeeping between organisations a transfer leaves behind: counting them
would count the transfer again). A cross-organisation transfer counts for the organisation that
made it, its source's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

GRANULARITIES = ("hour", "day")
COUNTED_TYPES = ("TRANSFER", "DEPOSIT", "WITHDRAWAL", "REFUND", "CAPTURE")


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


_TYPES = ", ".join(f"'{t}'" for t in COUNTED_TYPES)

_SERIES = f"""
    SELECT date_trunc(:granularity, completed_at, 'UTC') AS bucket_start, currency,
           count(*) FILTER (WHERE status = 'COMPLETED'),
           count(*) FILTER (WHERE status = 'FAILED'),
           coalesce(sum(amount) FILTER (WHERE status = 'COMPLETED'), 0),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at) * 1000),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at) * 1000)
      FROM transactions
     WHERE status IN ('COMPLETED', 'FAILED') AND type IN ({_TYPES})
       AND completed_at >= date_trunc(:granularity, CAST(:since AS timestamptz), 'UTC') AND completed_at < :until
       AND (CAST(:org AS uuid) IS NULL OR organization_id = :org)
     GROUP BY 1, 2
     ORDER BY 1, 2
"""

_BY_ORGANIZATION = f"""
    SELECT organization_id, currency,
           count(*) FILTER (WHERE status = 'COMPLETED'),
           count(*) FILTER (WHERE status = 'FAILED'),
           coalesce(sum(amount) FILTER (WHERE status = 'COMPLETED'), 0)
      FROM transactions
     WHERE status IN ('COMPLETED', 'FAILED') AND type IN ({_TYPES})
       AND completed_at >= date_trunc('hour', CAST(:since AS timestamptz), 'UTC') AND completed_at < :until
     GROUP BY 1, 2
     ORDER BY 1, 2
"""


def _check_granularity(granularity: str) -> None:
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")


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
    rows = session.execute(
        text(_SERIES),
        {"granularity": granularity, "since": since, "until": until, "org": organization_id},
    ).all()
    return [
        ActivityPoint(
            bucket_start=row[0],
            currency=row[1],
            completed=int(row[2]),
            failed=int(row[3]),
            volume=int(row[4]),
            latency_p50_ms=None if row[5] is None else float(row[5]),
            latency_p95_ms=None if row[6] is None else float(row[6]),
        )
        for row in rows
    ]


def activity_by_organization(session: Session, *, since: datetime, until: datetime) -> list[OrganizationActivity]:
    """Each organisation's totals per currency over the hours starting in [since's hour, until)."""
    rows = session.execute(text(_BY_ORGANIZATION), {"since": since, "until": until}).all()
    return [
        OrganizationActivity(
            organization_id=row[0], currency=row[1], completed=int(row[2]), failed=int(row[3]), volume=int(row[4])
        )
        for row in rows
    ]
