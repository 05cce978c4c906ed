"""Where Postgres spends its time per settled intent: pg_stat_statements around each bench phase.

    DATABASE_URL=postgresql://…/postgres python -m bench.statements [engine bulk singles holds expiry]

The server must load the extension (`shared_preload_libraries = 'pg_stat_statements'`: the embedded
server and most packaged ones do not by default; a private `initdb` data directory does it with one
line). Counts do not depend on how busy the machine is: calls, rows and shared blocks per settled
intent, and each statement's share of the phase's execution time. Times do, a little.

Sizes: BENCH_WALLETS, BENCH_ENGINE_INTENTS, BENCH_HOLD_INTENTS, BENCH_EXPIRY_HOLDS, BENCH_BULK_SECONDS,
BENCH_E2E_SECONDS (bench/config.py). Writes bench/statements.json.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg

from bench.config import BenchConfig
from tests import environment

TOP = 25
PHASES = ("engine", "bulk", "singles", "holds", "expiry")

_SNAPSHOT = """
    SELECT s.queryid, s.query, s.calls, s.rows, s.total_exec_time, s.shared_blks_hit + s.shared_blks_read,
           s.shared_blks_dirtied, s.wal_bytes
      FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
     WHERE d.datname = current_database()
"""


def _reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        # This database's statements only: the server may be shared with other databases.
        connection.execute(
            "SELECT pg_stat_statements_reset(0, oid, 0) FROM pg_database WHERE datname = current_database()"
        )


def _snapshot(dsn: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        rows = connection.execute(_SNAPSHOT).fetchall()
    keys = ("queryid", "query", "calls", "rows", "ms", "blocks", "dirtied", "wal_bytes")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _measured(dsn: str, name: str, intents: int | Callable[[Any], int], run: Callable[[], Any]) -> dict[str, Any]:
    """Run one phase between a reset and a snapshot; the statements per intent, heaviest first.
    `intents`: how many the phase settles, or how to read it from what the phase returned."""
    _reset(dsn)
    outcome = run()
    if callable(intents):
        intents = intents(outcome)
    statements = [s for s in _snapshot(dsn) if "pg_stat_statements" not in s["query"]]
    statements.sort(key=lambda s: s["ms"], reverse=True)
    total_ms = sum(s["ms"] for s in statements) or 1e-9
    per = max(intents, 1)
    summary = {
        "phase": name,
        "intents": intents,
        "statements_per_intent": sum(s["calls"] for s in statements) / per,
        "exec_ms_per_intent": total_ms / per,
        "blocks_per_intent": sum(s["blocks"] for s in statements) / per,
        "statements": [
            {
                **s,
                "queryid": str(s["queryid"]),
                "wal_bytes": float(s["wal_bytes"]),
                "share": s["ms"] / total_ms,
                "calls_per_1000": 1000 * s["calls"] / per,
                "ms_per_1000": 1000 * s["ms"] / per,
                "blocks_per_intent": s["blocks"] / per,
            }
            for s in statements
        ],
        "outcome": outcome,
    }
    _print(summary)
    return summary


def _print(summary: dict[str, Any]) -> None:
    print(
        f"\n== {summary['phase']}: {summary['intents']:,} intents; per intent {summary['statements_per_intent']:.2f}"
        f" statements, {summary['exec_ms_per_intent']:.3f} ms executing, {summary['blocks_per_intent']:.1f} blocks",
        flush=True,
    )
    print(f"{'share':>6} {'ms/1k':>8} {'calls/1k':>9} {'rows/call':>9} {'blk/int':>8}  query")
    for s in summary["statements"][:TOP]:
        query = " ".join(s["query"].split())[:150]
        rows_per_call = s["rows"] / max(s["calls"], 1)
        print(
            f"{s['share']:6.1%} {s['ms_per_1000']:8.1f} {s['calls_per_1000']:9.2f} {rows_per_call:9.1f}"
            f" {s['blocks_per_intent']:8.2f}  {query}"
        )


def measure(config: BenchConfig, dsn: str, phases: list[str]) -> list[dict[str, Any]]:
    from bench import dataset, e2e, engine, holds
    from bench.services import Services

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    data = dataset.create(dsn, config.wallets)
    services = Services(dict(os.environ))
    found: list[dict[str, Any]] = []
    timeout = config.settle_timeout_seconds
    try:
        services.start_worker(config.worker_concurrency)
        services.start_web()
        for mode in ("uniform", "hot"):
            hot = mode == "hot"
            if "engine" in phases:
                run = partial(engine.run, dsn, data, config.engine_intents, hot=hot, timeout_seconds=timeout)
                found.append(_measured(dsn, f"engine {mode}", config.engine_intents, run))
            for phase, path, body, clients, seconds in (
                ("bulk", e2e.BATCH_PATH, e2e.batch_body, config.bulk_clients, config.bulk_seconds),
                ("singles", e2e.TRANSFER_PATH, e2e.single_body, config.e2e_clients, config.e2e_seconds),
            ):
                if phase not in phases:
                    continue
                tag = f"statements-{phase}-{mode}"
                make = body(data, hot, tag, config.bulk_size) if phase == "bulk" else body(data, hot, tag)  # type: ignore[call-arg]

                def run_phase(path: str = path, make: Any = make, tag: str = tag, clients: int = clients,
                              seconds: float = seconds) -> Any:  # fmt: skip
                    return e2e.phase(
                        dsn, services.web_port, data, path, make, tag,
                        clients=clients, seconds=seconds, rate_per_second=None, timeout_seconds=timeout,
                    )  # fmt: skip

                # Intake's statements are in the figures too: a bulk intent costs both.
                found.append(_measured(dsn, f"{phase} {mode}", lambda o: o["database"]["intents"], run_phase))
            if "holds" in phases:
                found.append(
                    _measured(
                        dsn,
                        f"holds+captures {mode}",
                        2 * config.hold_intents,
                        partial(holds.run, dsn, data, config.hold_intents, hot=hot, timeout_seconds=timeout),
                    )
                )
        if "expiry" in phases:
            found.append(
                _measured(
                    dsn,
                    "expiry",
                    config.expiry_holds,
                    lambda: holds.expiry(
                        dsn,
                        data,
                        config.expiry_holds,
                        lead_seconds=config.expiry_lead_seconds,
                        timeout_seconds=timeout,
                    ),
                )
            )
    finally:
        services.stop()
    return found


def main(argv: list[str]) -> int:
    phases = argv or list(PHASES)
    config = BenchConfig.from_env()
    env = environment.prepare()
    os.environ.update({"DATABASE_URL": env.database_url, "REDIS_URL": env.redis_url})
    os.environ.setdefault("VAULTCRAFT_BCRYPT_ROUNDS", "4")
    try:
        from ops.migrate import upgrade_to_head

        upgrade_to_head(env.database_url)
        found = measure(config, env.database_url, phases)
    finally:
        from models.db import dispose_engine

        dispose_engine()
        environment.tear_down(env)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    path = config.output_dir / "statements.json"
    path.write_text(json.dumps(found, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
