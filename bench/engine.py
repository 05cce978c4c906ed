"""The engine alone: N intents already PENDING, drained by the real Celery workers.

Messages are published the way the sweep publishes a backlog (settle_batch_size_max ids each);
the workers settle them in batches and drain whatever else is pending behind them.
"""

from __future__ import annotations

from typing import Any

import psycopg

from bench.dataset import Dataset
from bench.measure import database_now, published_by, settled, vacuum, wait_until_quiet
from settings import get_settings

INSERT_PENDING = """
WITH w AS (SELECT %(wallets)s::uuid[] AS ids),
     g AS (SELECT 1 + floor(random() * %(count)s)::int AS s, 1 + floor(random() * %(count)s)::int AS d
             FROM generate_series(1, %(n)s))
INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                          source_wallet_id, destination_wallet_id, description)
SELECT gen_random_uuid(), %(org)s, %(user)s, 'TRANSFER', 'PENDING', 1 + floor(random() * 100)::int, 'INR',
       w.ids[g.s], coalesce(%(hot)s::uuid, w.ids[g.d]), %(tag)s
  FROM g, w
 WHERE w.ids[g.s] <> coalesce(%(hot)s::uuid, w.ids[g.d])
RETURNING id
"""


def insert_pending(dsn: str, data: Dataset, n: int, *, hot: bool, tag: str) -> list[Any]:
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            INSERT_PENDING,
            {
                "wallets": data.wallets,
                "count": len(data.wallets),
                "n": n,
                "org": data.organization_id,
                "user": data.user_id,
                "hot": data.hot_wallet if hot else None,
                "tag": tag,
            },
        ).fetchall()
        connection.commit()
    return [row[0] for row in rows]


def run(dsn: str, data: Dataset, n: int, *, hot: bool, timeout_seconds: float) -> dict[str, Any]:
    from tasks.settlement import enqueue_settlement

    tag = f"bench-engine-{'hot' if hot else 'uniform'}"
    ids = insert_pending(dsn, data, n, hot=hot, tag=tag)
    vacuum(dsn)
    batch = get_settings().settle_batch_size_max
    started = database_now(dsn)
    for start in range(0, len(ids), batch):
        assert enqueue_settlement(ids[start : start + batch]), "the broker refused a publish"
    finished = wait_until_quiet(dsn, timeout_seconds)
    result = settled(dsn, tag, since=started)
    # The rate the limit row is compared with counts until the relay published the last event too.
    last_published = published_by(dsn, started)
    span = (last_published - started).total_seconds() if last_published is not None else result["span_seconds"]
    span = max(span, result["span_seconds"])
    to_published = result["intents"] / span if span > 0 else 0.0
    return {**result, "finished": finished, "published_span_seconds": span, "per_second_to_published": to_published}
