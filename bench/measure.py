"""What the database says about a phase's intents: how many, how fast they settled, and latency
from accepted (created_at) to final (completed_at), all from the database's own timestamps."""

from __future__ import annotations

import time
from typing import Any

import psycopg

POLL_SECONDS = 0.25  # figures come from database timestamps, not from when the poll saw them


def wait_until_quiet(dsn: str, timeout_seconds: float) -> bool:
    """Until no intent is PENDING and every event is relayed: the bench database holds only the bench's
    intents, so the phase is then done, and the next one starts on a quiet system (the outbox relay
    of 50,000 engine intents would otherwise run on during the next phase, on its CPU)."""
    deadline = time.monotonic() + timeout_seconds
    with psycopg.connect(dsn, autocommit=True) as connection:
        while time.monotonic() < deadline:
            # EXISTS, not count(*): counting 50,000 PENDING rows ten times a second took a share of
            # the very cores the phase is measuring.
            row = connection.execute(
                "SELECT EXISTS (SELECT FROM transactions WHERE status = 'PENDING')"
                " OR EXISTS (SELECT FROM outbox_events WHERE published_at IS NULL)"
            ).fetchone()
            if row is not None and not row[0]:
                return True
            time.sleep(POLL_SECONDS)
    return False


def vacuum(dsn: str) -> None:
    """VACUUM (ANALYZE) before a phase, as pgbench does before its runs: the phase before may have left
    tens of thousands of dead row versions (the hot-wallet baseline updates one wallet row ~20,000
    times in a minute), faster than autovacuum, which wakes once a minute, clears them."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE)")


def database_now(dsn: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


def published_by(dsn: str, since: Any) -> Any:
    """When the last outbox event written since `since` was published (None if none was)."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute(
            "SELECT max(published_at) FROM outbox_events WHERE created_at >= %(since)s", {"since": since}
        ).fetchone()
    return row[0] if row else None


def settled(dsn: str, tag: str, since: Any | None = None) -> dict[str, Any]:
    """Intents tagged `tag`: count, final statuses, settled per second and latency percentiles (ms).

    Settled per second runs from `since` (default: the first intent's acceptance) to the last
    completion, so a backlog left when the load stops counts against the rate.
    """
    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute(
            """
            SELECT count(*),
                   count(*) FILTER (WHERE status = 'COMPLETED'),
                   count(*) FILTER (WHERE status = 'PENDING'),
                   extract(epoch FROM max(completed_at) - coalesce(%(since)s, min(created_at))),
                   percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
                       (ORDER BY extract(epoch FROM completed_at - created_at))
              FROM transactions WHERE description = %(tag)s
            """,
            {"tag": tag, "since": since},
        ).fetchone()
    assert row is not None
    count, completed, pending, span, percentiles = row
    span = float(span or 0)
    p50, p95, p99 = (1000 * float(p or 0) for p in (percentiles or [0, 0, 0]))
    return {
        "intents": count,
        "completed": completed,
        "pending": pending,
        "span_seconds": span,
        "settled_per_second": count / span if span > 0 else 0.0,
        "latency_ms": {"p50": p50, "p95": p95, "p99": p99},
    }
