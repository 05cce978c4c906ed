"""Holds through the engine, measured as the transfer engine is (bench/engine.py): N intents already
PENDING, drained by the real Celery workers, and the expiry of many holds due at the same second.

- holds: N holds accepted (a `holds` row and its PENDING HOLD intent, as `POST /holds` writes them),
  drained until every one is HELD;
- captures: one PENDING CAPTURE per hold (as `POST /holds/{id}/capture` writes it, its amount
  reserved on the hold): half take the whole hold (it ends CAPTURED), half take part of it and are
  then voided (`ledger.intents.holds.void`, the void's own code path; its rate is reported, not a goal);
- expiry: N holds HELD with one `expires_at`, each with its ETA task (as the engine schedules them
  when they become HELD) and a sweeper run at that second (as beat's next tick): the time from
  `expires_at` until the last is EXPIRED.

Hot: every hold's destination is the one hot wallet, as for the transfer engine's hot phase.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import psycopg

from bench.dataset import Dataset
from bench.measure import POLL_SECONDS, database_now, settled, vacuum, wait_until_quiet
from settings import get_settings

# Holds are never due during the hold and capture phases: a week, the API's default.
HOLD_EXPIRES_IN_SECONDS = 7 * 24 * 3600
VOID_CHUNK = 500  # holds voided per transaction (each void locks its hold, then its source wallet)

INSERT_HOLDS = """
WITH w AS (SELECT %(wallets)s::uuid[] AS ids),
     g AS (SELECT 1 + floor(random() * %(count)s)::int AS s, 1 + floor(random() * %(count)s)::int AS d,
                  2 + floor(random() * 100)::int AS amount
             FROM generate_series(1, %(n)s)),
     picked AS (SELECT gen_random_uuid() AS id, w.ids[g.s] AS source,
                       coalesce(%(hot)s::uuid, w.ids[g.d]) AS destination, g.amount
                  FROM g, w
                 WHERE w.ids[g.s] <> coalesce(%(hot)s::uuid, w.ids[g.d])),
     holds AS (
        INSERT INTO holds (id, organization_id, created_by, status, amount, currency, source_wallet_id,
                           destination_wallet_id, expires_in, expires_at, description)
        SELECT id, %(org)s, %(user)s, CAST(%(status)s AS text), amount, 'INR', source, destination, %(expires_in)s,
               CAST(%(expires_at)s AS timestamptz), %(tag)s
          FROM picked
        RETURNING id)
INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                          source_wallet_id, destination_wallet_id, description, completed_at)
SELECT id, %(org)s, %(user)s, 'HOLD', CAST(%(intent_status)s AS text), amount, 'INR', source, destination, %(tag)s,
       CASE WHEN CAST(%(intent_status)s AS text) = 'COMPLETED' THEN clock_timestamp() END
  FROM picked
RETURNING id
"""

# Half the holds captured whole, half in part (what remains is voided after): the capture's intent,
# and its amount reserved on the hold, as intake does.
INSERT_CAPTURES = """
WITH chosen AS (
    SELECT h.id AS hold_id, h.source_wallet_id, h.destination_wallet_id,
           CASE WHEN row_number() OVER (ORDER BY h.id) %% 2 = 0 THEN h.amount ELSE h.amount / 2 END AS amount
      FROM holds h WHERE h.description = %(hold_tag)s AND h.status = 'HELD'),
     reserved AS (
        UPDATE holds h SET reserved_amount = c.amount FROM chosen c WHERE h.id = c.hold_id RETURNING h.id)
INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                          source_wallet_id, destination_wallet_id, hold_id, description)
SELECT gen_random_uuid(), %(org)s, %(user)s, 'CAPTURE', 'PENDING', c.amount, 'INR',
       c.source_wallet_id, c.destination_wallet_id, c.hold_id, %(tag)s
  FROM chosen c
RETURNING id
"""

# The expiry phase's holds were written HELD: their sources' held amounts count them, as the engine's would.
HOLD_ON_SOURCES = """
UPDATE wallets w SET held_amount = w.held_amount + s.total
  FROM (SELECT source_wallet_id, sum(amount) AS total FROM holds WHERE description = %(tag)s
         GROUP BY source_wallet_id) AS s
 WHERE w.id = s.source_wallet_id
"""


def _insert_holds(
    dsn: str, data: Dataset, n: int, *, hot: bool, tag: str, held_until: Any | None = None
) -> list[uuid.UUID]:
    """PENDING holds and their intents, or (with `held_until`) holds already HELD until that instant."""
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            INSERT_HOLDS,
            {
                "wallets": data.wallets,
                "count": len(data.wallets),
                "n": n,
                "org": data.organization_id,
                "user": data.user_id,
                "hot": data.hot_wallet if hot else None,
                "tag": tag,
                "status": "PENDING" if held_until is None else "HELD",
                "intent_status": "PENDING" if held_until is None else "COMPLETED",
                "expires_in": HOLD_EXPIRES_IN_SECONDS,
                "expires_at": held_until,
            },
        ).fetchall()
        if held_until is not None:
            connection.execute(HOLD_ON_SOURCES, {"tag": tag})
        connection.commit()
    return [row[0] for row in rows]


def _drain(dsn: str, ids: list[Any], tag: str, timeout_seconds: float) -> dict[str, Any]:
    from tasks.settlement import enqueue_settlement

    vacuum(dsn)
    batch = get_settings().settle_batch_size_max
    started = database_now(dsn)
    for start in range(0, len(ids), batch):
        assert enqueue_settlement(ids[start : start + batch]), "the broker refused a publish"
    finished = wait_until_quiet(dsn, timeout_seconds)
    return {**settled(dsn, tag, since=started), "finished": finished}


def _hold_statuses(dsn: str, tag: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT status, count(*) FROM holds WHERE description = %s GROUP BY status", (tag,)
        ).fetchall()
    return {status: count for status, count in rows}


def _void_partly_captured(dsn: str, data: Dataset, tag: str) -> dict[str, Any]:
    """Void every hold of the phase still HELD (those captured in part), through the void's own code."""
    from ledger.access import Actor
    from ledger.intents import holds
    from models import Role
    from models.db import session_factory

    with psycopg.connect(dsn, autocommit=True) as connection:
        open_ids = [
            row[0]
            for row in connection.execute(
                "SELECT id FROM holds WHERE description = %s AND status = 'HELD' ORDER BY id", (tag,)
            )
        ]
    actor = Actor(data.user_id, data.organization_id, Role.OWNER)
    started = time.monotonic()
    for start in range(0, len(open_ids), VOID_CHUNK):
        with session_factory().begin() as session:
            for hold_id in open_ids[start : start + VOID_CHUNK]:
                holds.void(session, actor, hold_id)
    seconds = time.monotonic() - started
    return {"voided": len(open_ids), "seconds": seconds, "per_second": len(open_ids) / seconds if seconds else 0.0}


def run(dsn: str, data: Dataset, n: int, *, hot: bool, timeout_seconds: float) -> dict[str, Any]:
    """Holds, then captures of all of them (half partial, then voided), each drained by the workers."""
    mode = "hot" if hot else "uniform"
    hold_tag, capture_tag = f"bench-holds-{mode}", f"bench-captures-{mode}"
    hold_ids = _insert_holds(dsn, data, n, hot=hot, tag=hold_tag)
    held = _drain(dsn, hold_ids, hold_tag, timeout_seconds)
    held["hold_statuses"] = _hold_statuses(dsn, hold_tag)
    with psycopg.connect(dsn) as connection:
        capture_ids = [
            row[0]
            for row in connection.execute(
                INSERT_CAPTURES,
                {"hold_tag": hold_tag, "org": data.organization_id, "user": data.user_id, "tag": capture_tag},
            )
        ]
        connection.commit()
    captured = _drain(dsn, capture_ids, capture_tag, timeout_seconds)
    voids = _void_partly_captured(dsn, data, hold_tag)
    # The voids ran in this process, where no after-commit hook wakes the relay (the API's does):
    # ask for it, or their events wait for beat, which the bench does not run.
    from tasks.outbox import wake_relay

    wake_relay()
    wait_until_quiet(dsn, timeout_seconds)  # the voids' events relayed before the next phase
    captured["hold_statuses"] = _hold_statuses(dsn, hold_tag)
    return {"hold": held, "capture": captured, "void": voids}


def expiry(dsn: str, data: Dataset, n: int, *, lead_seconds: float, timeout_seconds: float) -> dict[str, Any]:
    """N holds HELD until one instant `lead_seconds` ahead; how long after it the last is EXPIRED."""
    from tasks.holds import schedule_expiry, sweep_expired_holds

    tag = "bench-expiry"
    expires_at = database_now(dsn) + timedelta(seconds=lead_seconds)
    ids = _insert_holds(dsn, data, n, hot=False, tag=tag, held_until=expires_at)
    vacuum(dsn)
    publish_started = time.monotonic()
    schedule_expiry([(hold_id, expires_at) for hold_id in ids])  # as the engine does after its commit
    sweep_expired_holds.apply_async(eta=expires_at)  # and beat's sweeper, ticking at that second
    publish_seconds = time.monotonic() - publish_started
    deadline = time.monotonic() + lead_seconds + timeout_seconds
    with psycopg.connect(dsn, autocommit=True) as connection:
        while time.monotonic() < deadline:
            row = connection.execute(
                "SELECT EXISTS (SELECT FROM holds WHERE description = %s AND status = 'HELD')", (tag,)
            ).fetchone()
            if row is not None and not row[0]:
                break
            time.sleep(POLL_SECONDS)
        row = connection.execute(
            """
            SELECT count(*) FILTER (WHERE status = 'EXPIRED'), count(*) FILTER (WHERE status = 'HELD'),
                   extract(epoch FROM max(ended_at) - %(at)s),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ended_at - %(at)s))
              FROM holds WHERE description = %(tag)s
            """,
            {"tag": tag, "at": expires_at},
        ).fetchone()
    assert row is not None
    expired, still_held, last, median = row
    wait_until_quiet(dsn, timeout_seconds)
    return {
        "holds": len(ids),
        "expired": expired,
        "still_held": still_held,
        "lead_seconds": lead_seconds,
        "publish_seconds": publish_seconds,
        "last_expired_after_seconds": float(last or 0),
        "median_expired_after_seconds": float(median or 0),
    }
