"""Sizes and durations of one bench run: bounded defaults, each overridable from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _ints(name: str, default: str) -> tuple[int, ...]:
    return tuple(int(part) for part in os.environ.get(name, default).split(",") if part.strip())


@dataclass(frozen=True)
class BenchConfig:
    wallets: int  # uniform traffic spreads over this many funded wallets
    engine_intents: int  # PENDING intents the workers drain, per distribution
    hold_intents: int  # holds drained per distribution, then one capture each (half partial, then voided)
    expiry_holds: int  # HELD holds that all expire at the same second
    expiry_lead_seconds: float  # how far ahead that second is set (the ETA tasks are published meanwhile)
    baseline_seconds: float  # per client count and distribution; pgbench runs it rounded up to whole seconds
    baseline_clients: tuple[int, ...]  # Python baseline: the client counts tried; the best one is reported
    pgbench_clients_uniform: int  # pgbench baseline: connections for uniform traffic
    pgbench_clients_hot: int  # and for the hot wallet (more only queue on its row lock)
    e2e_seconds: float  # per load level and distribution
    e2e_clients: int  # concurrent HTTP connections posting single transfers
    bulk_seconds: float  # per distribution; the bulk goal is stated over phases of BULK_GOAL_SECONDS
    bulk_clients: int
    bulk_size: int  # transfers per bulk request
    worker_concurrency: int  # Celery prefork processes; 0: as celeryconfig.py says
    webhook_intents: int  # intents drained per webhook throughput phase, each delivered to every endpoint
    # Endpoints subscribed to transaction.completed, on a receiver answering at once. Each of the three
    # webhook phases makes its own (the last one more): 3 x this + 1 within the organisation's limit of 20.
    webhook_endpoints: int
    webhook_seconds: float  # the half-load latency phase
    settle_timeout_seconds: float  # longest wait for a phase's intents to become final
    console_organizations: int  # console phase: organisations generated (0: no console phase)
    console_transactions: int  # and settled transactions over them, spread over 30 days
    console_requests: int  # requests timed per console page
    output_dir: Path

    @classmethod
    def from_env(cls) -> BenchConfig:
        return cls(
            wallets=_int("BENCH_WALLETS", 10_000),
            engine_intents=_int("BENCH_ENGINE_INTENTS", 50_000),
            hold_intents=_int("BENCH_HOLD_INTENTS", 50_000),
            expiry_holds=_int("BENCH_EXPIRY_HOLDS", 10_000),
            expiry_lead_seconds=_float("BENCH_EXPIRY_LEAD_SECONDS", 10.0),
            baseline_seconds=_float("BENCH_BASELINE_SECONDS", 5.0),
            baseline_clients=_ints("BENCH_BASELINE_CLIENTS", "1,2,4,8,16"),
            pgbench_clients_uniform=_int("BENCH_PGBENCH_CLIENTS_UNIFORM", 16),
            pgbench_clients_hot=_int("BENCH_PGBENCH_CLIENTS_HOT", 8),
            e2e_seconds=_float("BENCH_E2E_SECONDS", 10.0),
            e2e_clients=_int("BENCH_E2E_CLIENTS", 32),
            bulk_seconds=_float("BENCH_BULK_SECONDS", 60.0),
            bulk_clients=_int("BENCH_BULK_CLIENTS", 2),
            bulk_size=_int("BENCH_BULK_SIZE", 1000),
            worker_concurrency=_int("BENCH_WORKER_CONCURRENCY", 0),
            webhook_intents=_int("BENCH_WEBHOOK_INTENTS", 5_000),
            webhook_endpoints=_int("BENCH_WEBHOOK_ENDPOINTS", 6),
            webhook_seconds=_float("BENCH_WEBHOOK_SECONDS", 10.0),
            settle_timeout_seconds=_float("BENCH_SETTLE_TIMEOUT_SECONDS", 300.0),
            console_organizations=_int("BENCH_CONSOLE_ORGANIZATIONS", 100),
            console_transactions=_int("BENCH_CONSOLE_TRANSACTIONS", 1_000_000),
            console_requests=_int("BENCH_CONSOLE_REQUESTS", 40),
            output_dir=Path(os.environ.get("BENCH_OUTPUT_DIR", BENCH_DIR)),
        )
