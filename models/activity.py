"""The activity rollup behind the console's charts (ledger/analytics.py), and its append-only deltas.

Settling appends one row per (organisation, currency, hour) a batch touched to `activity_deltas`;
beat folds them into `activity_rollup`, an hour row and a day row per (organisation, currency). A
reader adds the rollup to the deltas not folded yet, in one statement: exact at any moment.

Settle latency is kept as a histogram over fixed log-scale buckets, `lat_00` … `lat_47` (counts),
so percentiles can be estimated from any sum of rows (ledger/analytics.py says where each bucket
starts), with the exact sum alongside for the mean.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, DateTime, Index, Integer, String, Table
from sqlalchemy.dialects.postgresql import UUID

from models.base import Base

LATENCY_BUCKETS = 48
LATENCY_COLUMNS = tuple(f"lat_{k:02d}" for k in range(LATENCY_BUCKETS))


def _counters() -> list[Column[int]]:
    return [
        Column("completed", Integer, nullable=False),
        Column("failed", Integer, nullable=False),
        # Minor units, completed intents only.
        Column("volume", BigInteger, nullable=False),
        # Settle latency of the completed intents, in microseconds: the sum, and the histogram.
        Column("latency_sum_us", BigInteger, nullable=False),
        *(Column(name, Integer, nullable=False) for name in LATENCY_COLUMNS),
    ]


# No primary key and no index: settling only appends, and beat's fold takes every row at once.
activity_deltas = Table(
    "activity_deltas",
    Base.metadata,
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("hour", DateTime(timezone=True), nullable=False),
    *_counters(),
)

activity_rollup = Table(
    "activity_rollup",
    Base.metadata,
    Column("granularity", String(4), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), primary_key=True),
    Column("bucket_start", DateTime(timezone=True), primary_key=True),
    Column("currency", String(3), primary_key=True),
    *_counters(),
    CheckConstraint("granularity IN ('hour', 'day')", name="granularity_known"),
    # Every organisation's buckets in a range (operators' charts); the key serves one organisation's.
    Index("ix_activity_rollup_bucket", "granularity", "bucket_start"),
)
