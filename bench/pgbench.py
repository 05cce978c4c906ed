"""The baseline measured by pgbench: the same row-lock transaction per transfer as bench/baseline.py,
run by Postgres's own load generator, a C client that costs the two cores far less than Python
processes do. Its rate is the one the engine's ratios are stated against.

pgbench is the one shipped with the `pgserver` package (the embedded Postgres), so the bench needs no
Postgres installed on the machine. It runs against whichever server the bench's database is on.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.baseline import RETRIES_MAX, percentiles_ms

# Wallet number -> wallet id, for pgbench's integer random numbers: 1..N the uniform wallets, 0 the hot one.
WALLET_TABLE = "bench_pgbench_wallets"
HOT_WALLET_NUMBER = 0
THREADS_MAX = 2

# One transfer, statement for statement the transaction of bench/baseline.py (and as many round trips):
# insert the intent, lock both wallets in id order, check the source's balance, update both
# balances, insert the two entries, mark the intent done, commit. Variables: :org, :user and :tag
# come from -D, :n is the number of uniform wallets.
SCRIPT_HEAD = """\
\\set s random(1, :n)
"""
UNIFORM_DESTINATION = """\
\\set d 1 + (:s - 1 + random(1, :n - 1)) % :n
"""
HOT_DESTINATION = f"""\
\\set d {HOT_WALLET_NUMBER}
"""
SCRIPT_BODY = f"""\
\\set amount random(1, 100)
BEGIN;
INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                          source_wallet_id, destination_wallet_id, description)
SELECT gen_random_uuid(), CAST(:org AS uuid), CAST(:user AS uuid), 'TRANSFER', 'PENDING', :amount, 'INR',
       s.wallet_id, d.wallet_id, :tag
  FROM {WALLET_TABLE} s, {WALLET_TABLE} d
 WHERE s.n = :s AND d.n = :d
RETURNING id AS txn, source_wallet_id AS src, destination_wallet_id AS dst \\gset
WITH locked AS MATERIALIZED (
    SELECT id, balance FROM wallets WHERE id IN (CAST(:src AS uuid), CAST(:dst AS uuid))
     ORDER BY id FOR NO KEY UPDATE
)
SELECT balance AS source_balance FROM locked WHERE id = CAST(:src AS uuid) \\gset
\\if :source_balance < :amount
UPDATE transactions SET status = 'FAILED', failure_reason = 'INSUFFICIENT_FUNDS', completed_at = clock_timestamp()
 WHERE id = CAST(:txn AS uuid);
\\else
UPDATE wallets SET balance = balance - :amount, version = version + 1 WHERE id = CAST(:src AS uuid)
RETURNING balance AS debit_balance, version AS debit_version \\gset
UPDATE wallets SET balance = balance + :amount, version = version + 1 WHERE id = CAST(:dst AS uuid)
RETURNING balance AS credit_balance, version AS credit_version \\gset
INSERT INTO ledger_entries (id, wallet_id, transaction_id, direction, amount, balance_after, wallet_version)
VALUES (gen_random_uuid(), CAST(:src AS uuid), CAST(:txn AS uuid), 'DEBIT', :amount, :debit_balance, :debit_version),
       (gen_random_uuid(), CAST(:dst AS uuid), CAST(:txn AS uuid), 'CREDIT', :amount, :credit_balance, :credit_version);
UPDATE transactions SET status = 'COMPLETED', completed_at = clock_timestamp() WHERE id = CAST(:txn AS uuid);
\\endif
END;
"""


def script(hot: bool) -> str:
    return SCRIPT_HEAD + (HOT_DESTINATION if hot else UNIFORM_DESTINATION) + SCRIPT_BODY


def executable() -> Path:
    """pgbench from the pgserver package: the bench must not depend on a Postgres installed on the machine."""
    try:
        from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError as missing:
        raise RuntimeError("the baseline needs pgbench from the `pgserver` package: make install") from missing
    path = Path(POSTGRES_BIN_PATH) / "pgbench"
    if not path.exists():
        raise RuntimeError(f"pgserver ships no pgbench at {path}")
    return path


@dataclass(frozen=True)
class Job:
    dsn: str
    organization_id: uuid.UUID
    user_id: uuid.UUID
    wallet_count: int
    hot: bool
    seconds: int  # pgbench -T takes whole seconds
    clients: int
    tag: str


def whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


def prepare_wallets(dsn: str, wallets: list[uuid.UUID], hot_wallet: uuid.UUID) -> None:
    """The number -> id table the script's random numbers go through (one primary-key probe per wallet,
    in the statement that inserts the intent, so no round trip is added)."""
    with psycopg.connect(dsn) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {WALLET_TABLE}")
        connection.execute(f"CREATE TABLE {WALLET_TABLE} (n int PRIMARY KEY, wallet_id uuid NOT NULL)")
        connection.execute(
            f"INSERT INTO {WALLET_TABLE} (n, wallet_id)"
            " SELECT n, id FROM unnest(%s::uuid[]) WITH ORDINALITY AS w(id, n) UNION ALL SELECT %s, %s",
            (wallets, HOT_WALLET_NUMBER, hot_wallet),
        )
        connection.execute(f"ANALYZE {WALLET_TABLE}")


def drop_wallets(dsn: str) -> None:
    with psycopg.connect(dsn) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {WALLET_TABLE}")


_FIGURES = {
    "transactions": r"number of transactions actually processed: (\d+)",
    "failed": r"number of failed transactions: (\d+)",
    "retried": r"number of transactions retried: (\d+)",
    "tps": r"^tps = ([\d.]+)",
    "latency_average_ms": r"latency average = ([\d.]+) ms",
    "connection_ms": r"initial connection time = ([\d.]+) ms",
}


def parse(output: str) -> dict[str, float]:
    """pgbench's summary: transactions committed, failed (after every retry) and retried, tps."""
    figures: dict[str, float] = {}
    for name, pattern in _FIGURES.items():
        found = re.search(pattern, output, re.MULTILINE)
        if found:
            figures[name] = float(found.group(1))
    missing = {"transactions", "tps"} - set(figures)
    if missing:
        raise RuntimeError(f"pgbench printed no {', '.join(sorted(missing))}:\n{output}")
    return figures


def logged_latencies(log_dir: Path) -> list[float]:
    """Seconds per committed transaction, from pgbench's per-transaction logs (-l: one file per thread,
    `client transaction latency_us script epoch epoch_us ...`; a failed one logs `failed`)."""
    latencies = []
    for log in log_dir.glob("pgbench_log.*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and fields[2].isdigit():
                latencies.append(int(fields[2]) / 1e6)
    return sorted(latencies)


def run(job: Job) -> dict[str, Any]:
    """One pgbench run of `job.seconds`: its tps, counts and latency percentiles (ms)."""
    with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as work:
        work_dir = Path(work)
        (work_dir / "transfer.sql").write_text(script(job.hot))
        command = [
            str(executable()),
            "--no-vacuum",  # the bench vacuums before each phase itself; pgbench's own tables are not there
            "--protocol=prepared",  # as the Python baseline (prepared statements)
            f"--client={job.clients}",
            f"--jobs={min(THREADS_MAX, job.clients)}",
            f"--time={job.seconds}",
            f"--max-tries={RETRIES_MAX}",  # deadlocks and serialization failures retried, as the Python baseline does
            f"--file={work_dir / 'transfer.sql'}",
            f"--define=n={job.wallet_count}",
            f"--define=org={job.organization_id}",
            f"--define=user={job.user_id}",
            f"--define=tag={job.tag}",
            "--log",
            f"--log-prefix={work_dir / 'pgbench_log'}",
            job.dsn,
        ]
        finished = subprocess.run(command, capture_output=True, text=True, check=False)
        if finished.returncode != 0:
            raise RuntimeError(f"pgbench exited with {finished.returncode}:\n{finished.stdout}\n{finished.stderr}")
        figures = parse(finished.stdout)
        latencies = logged_latencies(work_dir)
    return {
        "tool": "pgbench",
        "clients": job.clients,
        "threads": min(THREADS_MAX, job.clients),
        "seconds": job.seconds,
        "transactions": int(figures["transactions"]),
        "failed": int(figures.get("failed", 0)),
        "retried": int(figures.get("retried", 0)),
        "per_second": figures["tps"],
        "latency_ms": percentiles_ms(latencies),
        "latency_samples": len(latencies),
        "tag": job.tag,
        # Its summary as printed, less the line naming the script's temporary file.
        "output": "\n".join(line for line in finished.stdout.splitlines() if not line.startswith("transaction type:")),
    }
