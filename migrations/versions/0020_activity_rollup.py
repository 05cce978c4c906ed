"""Activity rollup for the console's charts: append-only deltas, and the rollup beat folds them into.

activity_deltas: one row per (organisation, currency, hour) a settling transaction touched; no key,
no index (settling only appends). activity_rollup: hour and day rows per (organisation, currency),
keyed for one organisation's range and indexed for every organisation's. Both carry completed and
failed counts, completed volume, and the completed intents' settle latency as a sum (µs) and a
histogram of 48 log-scale buckets (ledger/analytics.py). The transactions already final are
backfilled as deltas, which readers count at once and beat folds. And an index on
transactions.created_by, which the lists of what a user may see need.

Revision ID: 0020
Revises: 0019
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UUID = postgresql.UUID(as_uuid=True)
_TIME = sa.DateTime(timezone=True)
LATENCY_BUCKETS = 48
LATENCY_COLUMNS = [f"lat_{k:02d}" for k in range(LATENCY_BUCKETS)]
COUNTERS = ["completed", "failed", "volume", "latency_sum_us", *LATENCY_COLUMNS]
COUNTED_TYPES = "'TRANSFER', 'DEPOSIT', 'WITHDRAWAL', 'REFUND', 'CAPTURE'"


def _counters() -> list[sa.Column]:
    return [
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("volume", sa.BigInteger(), nullable=False),
        sa.Column("latency_sum_us", sa.BigInteger(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in LATENCY_COLUMNS),
    ]


# The final transactions as delta rows, as ledger/analytics.py writes them when they settle (as of 0020).
_LATENCY_US = "greatest(0, round(date_part('epoch', completed_at - created_at) * 1000000)::bigint)"
_BUCKET = (
    f"least({LATENCY_BUCKETS - 1}, greatest(0, floor(2 * ln(greatest(lat_us::float8 / 1000, 0.5)) / ln(2))::int + 1))"
)
_HISTOGRAM = ", ".join(
    f"coalesce(sum(n) FILTER (WHERE status = 'COMPLETED' AND b = {k}), 0)::int" for k in range(LATENCY_BUCKETS)
)
BACKFILL = f"""
    INSERT INTO activity_deltas (organization_id, currency, hour, {", ".join(COUNTERS)})
    SELECT organization_id, currency, hour,
           coalesce(sum(n) FILTER (WHERE status = 'COMPLETED'), 0)::int,
           coalesce(sum(n) FILTER (WHERE status = 'FAILED'), 0)::int,
           coalesce(sum(amount) FILTER (WHERE status = 'COMPLETED'), 0)::bigint,
           coalesce(sum(lat_us) FILTER (WHERE status = 'COMPLETED'), 0)::bigint,
           {_HISTOGRAM}
      FROM (SELECT organization_id, currency, date_trunc('hour', completed_at, 'UTC') AS hour, status,
                   {_BUCKET} AS b, count(*) AS n, sum(amount) AS amount, sum(lat_us) AS lat_us
              FROM (SELECT organization_id, currency, status, amount, completed_at, {_LATENCY_US} AS lat_us
                      FROM transactions
                     WHERE status IN ('COMPLETED', 'FAILED') AND type IN ({COUNTED_TYPES})) AS t
             GROUP BY 1, 2, 3, 4, 5) AS s
     GROUP BY organization_id, currency, hour
"""


def upgrade() -> None:
    op.create_table(
        "activity_deltas",
        sa.Column("organization_id", _UUID, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("hour", _TIME, nullable=False),
        *_counters(),
    )
    op.create_table(
        "activity_rollup",
        sa.Column("granularity", sa.String(length=4), nullable=False),
        sa.Column("organization_id", _UUID, nullable=False),
        sa.Column("bucket_start", _TIME, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        *_counters(),
        sa.CheckConstraint("granularity IN ('hour', 'day')", name=op.f("ck_activity_rollup_granularity_known")),
        sa.PrimaryKeyConstraint(
            "granularity", "organization_id", "bucket_start", "currency", name=op.f("pk_activity_rollup")
        ),
    )
    # Every organisation's buckets in a range (operators' charts).
    op.create_index("ix_activity_rollup_bucket", "activity_rollup", ["granularity", "bucket_start"])
    op.execute(BACKFILL)
    # The transactions a user may see (ledger/intents/transfers.py visible_transactions) are an OR of four
    # conditions; this was the one no index served, so the console's and the API's lists read the whole
    # table (at 1,000,000 transactions, half a second a page).
    op.create_index("ix_transactions_created_by", "transactions", ["created_by", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_transactions_created_by", table_name="transactions")
    op.drop_index("ix_activity_rollup_bucket", table_name="activity_rollup")
    op.drop_table("activity_rollup")
    op.drop_table("activity_deltas")
