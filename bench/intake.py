"""What one accepted single transfer costs the web: CPU, Postgres round trips, Redis round trips.

    DATABASE_URL=… REDIS_URL=… python -m bench.intake [--requests N] [--seconds S] [--flamegraph PATH]

Rates on a shared two-core machine move with whatever else runs; counts do not, and CPU time per
request moves much less than a rate. Two measurements, on a database of their own:

1. In process: the Flask app (the one the web serves) answers `--requests` transfers through its
   WSGI test client, one after another. Per request: this process's CPU time (the test client's
   own work is in it, the same before and after a change), SQL statements and the transaction
   round trips around them (BEGIN, COMMIT) counted by SQLAlchemy events, and Redis commands and
   round trips counted in redis-py's connection (the rate limiter, the token revocation check, the
   settlement wake-up). With pg_stat_statements on the server, also what Postgres counted.
2. Served: the Procfile's web (granian) under `--clients` keep-alive clients for `--seconds`: the web
   process tree's CPU milliseconds per accepted intent (/proc), and with `--flamegraph`, a py-spy
   flame graph of it over the same load. No worker runs: intents stay PENDING, which costs the web
   nothing more.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from bench.config import BenchConfig
from tests import environment

WARM_UP_REQUESTS = 200


@contextmanager
def counted() -> Iterator[Counter[str]]:
    """SQL statements and transactions (SQLAlchemy events), Redis commands and round trips (redis-py)."""
    import redis.connection
    from sqlalchemy import event

    from models.db import get_engine

    counts: Counter[str] = Counter(sql_begin_round_trips=0, sql_commit_or_rollback_round_trips=0)
    engine = get_engine()

    def on_statement(_connection: Any, cursor: Any, *_args: Any) -> None:
        counts["sql_statements"] += 1
        driver = cursor.connection
        if not driver.autocommit and driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            counts["sql_begin_round_trips"] += 1  # psycopg sends BEGIN before this statement

    def on_end(connection: Any) -> None:
        driver = connection.connection.dbapi_connection
        if driver.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            counts["sql_commit_or_rollback_round_trips"] += 1

    listeners = (
        ("before_cursor_execute", on_statement),
        ("commit", on_end),
        ("rollback", on_end),
    )
    for name, listener in listeners:
        event.listen(engine, name, listener)
    patched: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, key: str) -> None:
        original = getattr(owner, name)

        def counting(*args: Any, **kwargs: Any) -> Any:
            counts[key] += 1
            return original(*args, **kwargs)

        patched.append((owner, name, original))
        setattr(owner, name, counting)

    for serializer in (redis.connection.PythonRespSerializer, redis.connection.HiredisRespSerializer):
        wrap(serializer, "pack", "redis_commands")
    wrap(redis.connection.AbstractConnection, "send_packed_command", "redis_round_trips")
    try:
        yield counts
    finally:
        for name, listener in listeners:
            event.remove(engine, name, listener)
        for owner, name, original in patched:
            setattr(owner, name, original)


def _pg_stat_statements(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            # This database's statements only: the server may be shared.
            connection.execute(
                "SELECT pg_stat_statements_reset(0, oid, 0) FROM pg_database WHERE datname = current_database()"
            )
        return True
    except psycopg.Error:
        return False


def _statement_calls(dsn: str) -> list[tuple[int, float, str]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        rows = connection.execute(
            """SELECT s.calls, s.total_exec_time, s.query FROM pg_stat_statements s
                 JOIN pg_database d ON d.oid = s.dbid
                WHERE d.datname = current_database() AND s.query NOT LIKE '%%pg_stat_statements%%'
                ORDER BY s.calls DESC"""
        ).fetchall()
    return [(int(calls), float(ms), " ".join(query.split())[:120]) for calls, ms, query in rows]


def in_process(dsn: str, data: Any, requests: int) -> dict[str, Any]:
    from bench.dataset import BENCH_PASSWORD
    from bench.e2e import TRANSFER_PATH, single_body
    from web.app import create_app

    app = create_app()
    client = app.test_client()
    login = client.post("/api/v1/auth/login", json={"email": data.email, "password": BENCH_PASSWORD}).get_json()
    token = login["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    make = single_body(data, False, "bench-intake")
    for _ in range(WARM_UP_REQUESTS):
        assert client.post(TRANSFER_PATH, data=make(), headers=headers).status_code == 202
    bodies = [make() for _ in range(requests)]
    has_statements = _pg_stat_statements(dsn)
    statuses: Counter[int] = Counter()
    with counted() as counts:
        cpu = time.process_time()
        for body in bodies:
            statuses[client.post(TRANSFER_PATH, data=body, headers=headers).status_code] += 1
        cpu = time.process_time() - cpu
    out: dict[str, Any] = {
        "requests": requests,
        "statuses": dict(statuses),
        "cpu_ms_per_request": 1000 * cpu / requests,
        **{f"{key}_per_request": value / requests for key, value in sorted(counts.items())},
    }
    if has_statements:
        calls = _statement_calls(dsn)
        out["postgres_calls_per_request"] = sum(c for c, _, _ in calls) / requests
        out["postgres_exec_ms_per_request"] = sum(ms for _, ms, _ in calls) / requests
        out["postgres_statements"] = [
            {"calls_per_request": c / requests, "ms_per_request": ms / requests, "query": q} for c, ms, q in calls
        ]
    return out


def served(dsn: str, data: Any, *, clients: int, seconds: float, flamegraph: Path | None) -> dict[str, Any]:
    from bench import e2e
    from bench.http_load import load
    from bench.services import Services
    from ops.processes import process_tree

    services = Services(dict(os.environ))
    services.start_web()
    try:
        token = e2e.login(services.web_port, data.email)
        make = e2e.single_body(data, False, "bench-intake-served")
        load(services.web_port, token, e2e.TRANSFER_PATH, make, clients=clients, seconds=2)  # warm up
        spy = None
        if flamegraph is not None:
            web_pid = services.processes["web"].pid
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(web_pid),
                    "--subprocesses",
                    "--nonblocking",
                    "--format",
                    "flamegraph",
                    "--output",
                    str(flamegraph),
                    "--duration",
                    str(int(seconds)),
                ],
                stdout=subprocess.DEVNULL,
            )
            time.sleep(1)  # py-spy attaches
        before = services.cpu_seconds()["web"]
        result = load(services.web_port, token, e2e.TRANSFER_PATH, make, clients=clients, seconds=seconds)
        used = services.cpu_seconds()["web"] - before
        if spy is not None:
            spy.wait(timeout=seconds + 60)
        accepted = max(result.accepted_items, 1)
        return {
            "clients": clients,
            "web_processes": len(process_tree(services.processes["web"].pid)),
            "http": result.as_dict(),
            "web_cpu_ms_per_accepted": 1000 * used / accepted,
        }
    finally:
        services.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=0.0, help="served phase length (0: skip it)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--wallets", type=int, default=1000)
    parser.add_argument("--flamegraph", type=Path)
    parser.add_argument("--output", type=Path, default=BenchConfig.from_env().output_dir / "intake.json")
    args = parser.parse_args(argv)
    env = environment.prepare()
    os.environ.update({"DATABASE_URL": env.database_url, "REDIS_URL": env.redis_url})
    os.environ.setdefault("VAULTCRAFT_BCRYPT_ROUNDS", "4")
    # One token drives everything: the per-token write limit would measure the limiter's refusals.
    os.environ["VAULTCRAFT_WRITE_LIMIT_PER_TOKEN"] = "1000000 per second"
    os.environ.setdefault("WEB_ACCESS_LOG", "1")
    try:
        from bench import dataset
        from ops.migrate import upgrade_to_head

        upgrade_to_head(env.database_url)
        data = dataset.create(env.database_url, args.wallets)
        found: dict[str, Any] = {"in_process": in_process(env.database_url, data, args.requests)}
        print(json.dumps(found["in_process"], indent=2), flush=True)
        if args.seconds:
            found["served"] = served(
                env.database_url, data, clients=args.clients, seconds=args.seconds, flamegraph=args.flamegraph
            )
            print(json.dumps(found["served"], indent=2), flush=True)
    finally:
        from models.db import dispose_engine

        dispose_engine()
        environment.tear_down(env)
    args.output.write_text(json.dumps(found, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
