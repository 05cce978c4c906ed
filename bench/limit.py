"""The limit row: what set-based SQL settles per second on the same server, wallets and intents as the
engine phase, with nothing of the engine around it.

One Python process, one connection, batches of 1,000 of the same kind of PENDING intents the engine
drains (bench/engine.py's INSERT_PENDING, the same wallets, uniform or one hot destination). Each
batch is one transaction of five statements:

    claim the 1,000 oldest PENDING (FOR UPDATE)  →  lock their wallets in id order
    →  balances and balance_after computed in Python  →  COPY the entries (binary)
    →  one `UPDATE … FROM unnest` for the balances  →  one for the statuses  →  commit

No queue, no Celery, no events, no relay, no risk limits, review, holds, monitors or per-wallet order
check: the least a queue-fed engine has to write for the same intents (entries, balances, statuses).
Its rate is counted the engine's way: from the first claim to the last completion, on the database's
clock. The engine's goal is a share of it (bench/report.py, LIMIT_GOAL).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import psycopg

from bench.dataset import Dataset
from bench.engine import insert_pending
from bench.measure import database_now, settled, vacuum

BATCH = 1000

_CLAIM = """
    SELECT id, source_wallet_id, destination_wallet_id, amount FROM transactions
     WHERE status = 'PENDING' AND description = %(tag)s
     ORDER BY created_at, id
     LIMIT %(limit)s
       FOR UPDATE
"""
_LOCK_WALLETS = "SELECT id, balance, version FROM wallets WHERE id = ANY(%(ids)s) ORDER BY id FOR NO KEY UPDATE"
_COPY_ENTRIES = (
    "COPY ledger_entries (wallet_id, transaction_id, direction, amount, balance_after, wallet_version, created_at)"
    " FROM STDIN (FORMAT BINARY)"
)
_ENTRY_TYPES = ["uuid", "uuid", "varchar", "int8", "int8", "int8", "timestamptz"]
_UPDATE_BALANCES = """
    UPDATE wallets AS w SET balance = v.balance, version = v.version, updated_at = now()
      FROM unnest(%(ids)s::uuid[], %(balances)s::bigint[], %(versions)s::bigint[]) AS v(id, balance, version)
     WHERE w.id = v.id
"""
_SET_STATUSES = """
    UPDATE transactions AS t SET status = v.status, failure_reason = v.reason, completed_at = clock_timestamp()
      FROM unnest(%(ids)s::uuid[], %(statuses)s::text[], %(reasons)s::text[]) AS v(id, status, reason)
     WHERE t.id = v.id
"""


def settle_batch(connection: psycopg.Connection[Any], tag: str) -> int:
    """One set-based batch in its own transaction; how many intents it settled."""
    with connection.transaction():
        intents = connection.execute(_CLAIM, {"tag": tag, "limit": BATCH}).fetchall()
        if not intents:
            return 0
        wallet_ids = sorted({w for _, source, destination, _ in intents for w in (source, destination)})
        state = {
            row[0]: [row[1], row[2]]
            for row in connection.execute(_LOCK_WALLETS, {"ids": wallet_ids}, binary=True).fetchall()
        }
        touched: dict[uuid.UUID, None] = {}
        statuses: list[str] = []
        reasons: list[str | None] = []
        entries: list[tuple[Any, ...]] = []
        posted_at = connection.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        for transaction_id, source, destination, amount in intents:
            if state[source][0] < amount:
                statuses.append("FAILED")
                reasons.append("INSUFFICIENT_FUNDS")
                continue
            statuses.append("COMPLETED")
            reasons.append(None)
            for wallet_id, direction, delta in ((source, "DEBIT", -amount), (destination, "CREDIT", amount)):
                wallet = state[wallet_id]
                wallet[0] += delta
                wallet[1] += 1
                touched[wallet_id] = None
                entries.append((wallet_id, transaction_id, direction, amount, wallet[0], wallet[1], posted_at))
        with connection.cursor() as cursor, cursor.copy(_COPY_ENTRIES) as copy:
            copy.set_types(_ENTRY_TYPES)
            for entry in entries:
                copy.write_row(entry)
        ids = list(touched)
        connection.execute(
            _UPDATE_BALANCES,
            {"ids": ids, "balances": [state[w][0] for w in ids], "versions": [state[w][1] for w in ids]},
            binary=True,
        )
        connection.execute(
            _SET_STATUSES,
            {"ids": [row[0] for row in intents], "statuses": statuses, "reasons": reasons},
            binary=True,
        )
        return len(intents)


def run(dsn: str, data: Dataset, n: int, *, hot: bool) -> dict[str, Any]:
    """Settle `n` fresh PENDING intents set-based; the database's count of them, like the engine's."""
    tag = f"bench-limit-{'hot' if hot else 'uniform'}"
    insert_pending(dsn, data, n, hot=hot, tag=tag)
    vacuum(dsn)
    batches: defaultdict[str, int] = defaultdict(int)
    started = database_now(dsn)
    with psycopg.connect(dsn, prepare_threshold=0) as connection:
        while settle_batch(connection, tag):
            batches["batches"] += 1
    return {**settled(dsn, tag, since=started), "batch_size": BATCH, **batches}
