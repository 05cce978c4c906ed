"""The usual Postgres ledger: one database transaction per transfer, holding both wallet locks until
its own commit. Raw SQL over psycopg, prepared statements, one process per client; the best client
count is the one reported.

This is the Python-client figure, kept for comparison with earlier runs. On two cores the client
processes take a large share of the CPU themselves, so they stop well short of what the server can
do: the reference every ratio is stated against is the same transaction run by pgbench
(bench/pgbench.py)."""

from __future__ import annotations

import multiprocessing
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.errors

RETRIES_MAX = 5
CONTENTION = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)

INSERT_INTENT = """
INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                          source_wallet_id, destination_wallet_id, description)
VALUES (%s, %s, %s, 'TRANSFER', 'PENDING', %s, 'INR', %s, %s, %s)
"""
# NO KEY UPDATE so the foreign-key KEY SHARE locks of concurrent inserts do not deadlock with it:
# the baseline gets the same fix as the engine, so it is measured at its best.
LOCK_WALLETS = "SELECT id, balance FROM wallets WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE"
POST = "UPDATE wallets SET balance = balance + %s, version = version + 1 WHERE id = %s RETURNING balance, version"
INSERT_ENTRIES = """
INSERT INTO ledger_entries (id, wallet_id, transaction_id, direction, amount, balance_after, wallet_version)
VALUES (%s, %s, %s, 'DEBIT', %s, %s, %s), (%s, %s, %s, 'CREDIT', %s, %s, %s)
"""
COMPLETE = "UPDATE transactions SET status = 'COMPLETED', completed_at = clock_timestamp() WHERE id = %s"
FAIL = (
    "UPDATE transactions SET status = 'FAILED', failure_reason = 'INSUFFICIENT_FUNDS', completed_at = clock_timestamp()"
    " WHERE id = %s"
)


@dataclass(frozen=True)
class Job:
    dsn: str
    organization_id: uuid.UUID
    user_id: uuid.UUID
    wallets: list[uuid.UUID]
    hot_wallet: uuid.UUID | None
    seconds: float
    seed: int
    tag: str


def transfer(cursor: psycopg.Cursor[Any], job: Job, source: uuid.UUID, destination: uuid.UUID, amount: int) -> None:
    transaction_id = uuid.uuid4()
    cursor.execute(
        INSERT_INTENT, (transaction_id, job.organization_id, job.user_id, amount, source, destination, job.tag)
    )
    balances = dict(cursor.execute(LOCK_WALLETS, ([source, destination],)).fetchall())
    if balances[source] < amount:
        cursor.execute(FAIL, (transaction_id,))
        return
    debit = cursor.execute(POST, (-amount, source)).fetchone()
    credit = cursor.execute(POST, (amount, destination)).fetchone()
    assert debit is not None and credit is not None
    debit_row = (uuid.uuid4(), source, transaction_id, amount, *debit)
    cursor.execute(INSERT_ENTRIES, (*debit_row, uuid.uuid4(), destination, transaction_id, amount, *credit))
    cursor.execute(COMPLETE, (transaction_id,))


def _client(job: Job, results: Any) -> None:
    rng = random.Random(job.seed)
    latencies: list[float] = []
    with psycopg.connect(job.dsn, prepare_threshold=0) as connection, connection.cursor() as cursor:
        deadline = time.monotonic() + job.seconds
        while time.monotonic() < deadline:
            source = rng.choice(job.wallets)
            destination = job.hot_wallet or rng.choice(job.wallets)
            if source == destination:
                continue
            started = time.perf_counter()
            for attempt in range(1, RETRIES_MAX + 1):
                try:
                    transfer(cursor, job, source, destination, rng.randint(1, 100))
                    connection.commit()
                    break
                except CONTENTION:
                    connection.rollback()
                    if attempt == RETRIES_MAX:
                        raise
            latencies.append(time.perf_counter() - started)
    results.put(latencies)


def run(job: Job, clients: int) -> dict[str, Any]:
    """`clients` processes for `job.seconds`: transfers per second and latency percentiles (ms)."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [
        context.Process(target=_client, args=(Job(**{**job.__dict__, "seed": job.seed + n}), results))
        for n in range(clients)
    ]
    for process in processes:
        process.start()
    latencies = sorted(latency for _ in processes for latency in results.get())
    for process in processes:
        process.join()
    # Every client ran for exactly job.seconds once connected.
    return {
        "clients": clients,
        "transfers": len(latencies),
        "per_second": len(latencies) / job.seconds,
        "latency_ms": percentiles_ms(latencies),
    }


def percentiles_ms(sorted_seconds: list[float]) -> dict[str, float]:
    if not sorted_seconds:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    last = len(sorted_seconds) - 1
    return {f"p{q}": 1000 * sorted_seconds[min(last, round(q / 100 * last))] for q in (50, 95, 99)}
