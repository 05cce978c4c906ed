"""What one bulk intent costs, in-process: bulk intake and settlement, without HTTP, broker or relay.

    DATABASE_URL=postgresql://…/postgres python -m bench.bulk_cost [uniform|hot]

Accepts batches of BENCH_BULK_SIZE transfers through `ledger.intents.bulk.submit_transfers` and
settles each with `settle_oldest_pending`, as the web and the drain do, one after the other in this
process, and reports per intent: this process's CPU (intake, settlement), its Postgres backend's CPU
(read from /proc: the server must run on this machine), and, when the server preloads
pg_stat_statements, the shared blocks of each statement. CPU times are what the work costs however
busy the machine is (a paired old/new comparison still wants alternating runs); blocks do not
depend on it at all. A first batch warms up and is not counted.

Sizes: BENCH_WALLETS (10,000), BENCH_BULK_SIZE (1,000), BENCH_COST_BATCHES (20),
BENCH_COST_PREFILL_BATCHES (50: settled before measuring, so the indexes are not tiny).
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.config import BenchConfig
from tests import environment

TOP = 12


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _backend_cpu(pid: int) -> float:
    """CPU seconds of the Postgres backend with this process id (/proc fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _statements(dsn: str, reset: bool) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        try:
            if reset:
                connection.execute(
                    "SELECT pg_stat_statements_reset(0, oid, 0) FROM pg_database WHERE datname = current_database()"
                )
                return []
            return connection.execute(
                "SELECT s.shared_blks_hit + s.shared_blks_read, s.total_exec_time, s.calls, s.query"
                "  FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                " WHERE d.datname = current_database() AND s.toplevel ORDER BY 1 DESC"
            ).fetchall()
        except psycopg.Error:
            return []  # the server does not load pg_stat_statements: CPU figures only


def run(dsn: str, data: Any, config: BenchConfig, *, hot: bool, batches: int, prefill: int) -> dict[str, float]:
    from ledger.access import Actor
    from ledger.integrity.audit import Origin
    from ledger.intents import bulk
    from ledger.intents.bulk import BulkItem
    from ledger.settlement.posting import settle_oldest_pending
    from models import Role
    from models.db import session_factory

    actor = Actor(data.user_id, data.organization_id, Role.OWNER)
    wallets = [str(w) for w in data.wallets]
    rng = random.Random(f"bulk-cost-{hot}")
    sessions = session_factory()

    def items() -> list[BulkItem]:
        made = []
        for _ in range(config.bulk_size):
            source, destination = rng.sample(wallets, 2)
            destination = str(data.hot_wallet) if hot else destination
            made.append(BulkItem(source, destination, rng.randint(1, 100), "INR", "bulk-cost", None, uuid.uuid4().hex))
        return made

    def timed(work: Callable[[Any], Any]) -> tuple[Any, float, float]:
        with sessions.begin() as session:
            connection = session.connection().connection.driver_connection
            assert connection is not None
            pid = connection.info.backend_pid
            own, backend = _own_cpu(), _backend_cpu(pid)
            result = work(session)
        return result, _own_cpu() - own, _backend_cpu(pid) - backend  # with the commit

    totals = dict.fromkeys(("intake_python", "intake_postgres", "settle_python", "settle_postgres"), 0.0)
    counted = 0
    for batch in range(prefill + 1 + batches):
        if batch == prefill + 1:
            _statements(dsn, reset=True)
        batch_items = items()

        def intake(session: Any, batch_items: list[BulkItem] = batch_items) -> Any:
            return bulk.submit_transfers(session, actor, batch_items, origin=Origin("127.0.0.1", "bulk-cost"))

        outcome, python, backend = timed(intake)
        assert len(outcome.created_ids) == len(batch_items)
        settle = [0.0, 0.0]
        while True:
            settled, python_s, backend_s = timed(lambda session: settle_oldest_pending(session, limit=config.bulk_size))
            settle[0] += python_s
            settle[1] += backend_s
            if not settled.decided:
                break
        if batch > prefill:
            counted += len(batch_items)
            totals["intake_python"] += python
            totals["intake_postgres"] += backend
            totals["settle_python"] += settle[0]
            totals["settle_postgres"] += settle[1]
    figures = {name: 1000 * seconds / counted for name, seconds in totals.items()}
    print(f"\n== {'hot' if hot else 'uniform'}: {counted:,} intents; CPU ms per intent:", flush=True)
    for name, value in figures.items():
        print(f"  {name:16s} {value:.3f}")
    statements = _statements(dsn, reset=False)
    if statements:
        figures["blocks"] = sum(s[0] for s in statements) / counted
        print(f"  shared blocks per intent {figures['blocks']:.1f}; heaviest statements (blocks/intent, us/intent):")
        for blocks, ms, _calls, query in statements[:TOP]:
            print(f"  {blocks / counted:7.2f} {1000 * ms / counted:8.1f}  {' '.join(query.split())[:100]}")
    return figures


def main(argv: list[str]) -> int:
    modes = argv or ["uniform", "hot"]
    config = BenchConfig.from_env()
    batches = int(os.environ.get("BENCH_COST_BATCHES", 20))
    prefill = int(os.environ.get("BENCH_COST_PREFILL_BATCHES", 50))
    env = environment.prepare()
    os.environ.update({"DATABASE_URL": env.database_url, "REDIS_URL": env.redis_url})
    os.environ.setdefault("VAULTCRAFT_BCRYPT_ROUNDS", "4")
    try:
        from bench import dataset
        from ops.migrate import upgrade_to_head

        upgrade_to_head(env.database_url)
        # Without the extension preloaded, CPU figures only.
        with psycopg.connect(env.database_url, autocommit=True) as connection, contextlib.suppress(psycopg.Error):
            connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        data = dataset.create(env.database_url, config.wallets)
        for mode in modes:
            run(env.database_url, data, config, hot=mode == "hot", batches=batches, prefill=prefill)
            prefill = 0  # the first mode's batches fill the tables for the next
    finally:
        from models.db import dispose_engine

        dispose_engine()
        environment.tear_down(env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
