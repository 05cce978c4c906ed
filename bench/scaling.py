"""The scaling table (issue 23, goal 4): the settled rate against the number of processes, and the
engine's rate against the size of the backlog it drains, with the worker's memory beside it.

    python -m bench.scaling      (writes bench/scaling.json; `make bench-scaling`; `make bench` runs it
                                  too, last, on a database of its own, unless BENCH_SCALING=0)

One fresh database (tests/environment.py) with the bench's funded wallets (bench/dataset.py,
BENCH_WALLETS), uniform traffic only, processes started from the Procfile's commands
(bench/services.py), the worker's queues purged whenever a worker starts or stops:

(a) **Worker processes.** The Procfile's `worker` is one Celery worker whose prefork pool forks
    `--concurrency` child processes; each child runs one settle task at a time on its own Postgres
    connection, and the parent only fetches messages and hands them out. "N worker processes" here is
    that worker with `--concurrency N` (BENCH_SCALING_WORKERS, default 1,2,4; celeryconfig.py runs 2),
    started afresh for each N. Per N, BENCH_SCALING_INTENTS PENDING intents are inserted set-based and
    drained as the engine phase does (bench/engine.py: messages of settle_batch_size_max ids, and the
    drains they start).
(b) **Web processes.** The Procfile's `web` is granian; `WEB_PROCESSES` (web/serve.py) sets its
    processes (BENCH_SCALING_WEB, default 1,2; `make run` uses 2), started afresh for each count, with
    a worker at its configured concurrency behind them. BENCH_E2E_CLIENTS keep-alive clients post
    single transfers for BENCH_SCALING_E2E_SECONDS (bench/e2e.py), then every intent is waited for:
    settled/s from the database, as the end-to-end row of `make bench` counts it.
(c) **Backlog.** For each size in BENCH_SCALING_BACKLOGS (default 10,000, 100,000, 1,000,000),
    smallest first: once the worker of (b) is idle (nothing queued, running or scheduled), that many
    PENDING intents are inserted set-based (chunks of bench/engine.py's INSERT ... SELECT), vacuumed,
    and the engine phase's messages published. Reported: the rate overall (first publish to last
    completion, on the database's clock) and in each fifth of the drain's time (the first and the
    last fifth in the table: a drain that slows as it goes settles fewer in its last), the worker's
    CPU per intent (its process tree, from /proc: robust to a busy machine; Postgres's is every
    Postgres process on the machine, so only a quiet machine's is the bench's alone), and its resident
    memory sampled during the drain: the most one process held and the most the tree held, after
    what it held before. One worker drains every size, as a deployed one would: memory a large
    backlog leaves behind shows in the next row.
    The curve is flat when the rate at the largest backlog is at least 1 - FLAT_TOLERANCE of the rate
    at the smallest; the verdict is printed and is one of `make bench`'s goals (reported, never fatal).

Default sizes take about ten minutes on 2 cores, most of it the 1,000,000-intent backlog
(inserting it, vacuuming it, draining it, and the outbox relay publishing its events).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from bench.config import BenchConfig
from bench.measure import database_now, published_by, settled, vacuum, wait_until_quiet

MIB = 1024
FLAT_TOLERANCE = 0.2  # the rate at the largest backlog may be this much below the smallest's
PARTS = 5  # the drain is cut into this many equal parts by completion order: first and last reported
INSERT_CHUNK = 100_000  # PENDING intents per INSERT ... SELECT (one transaction each)
SLOWEST_RATE = 500  # a drain's wait is bounded by BENCH_SETTLE_TIMEOUT_SECONDS or this many per second
ENABLE_VARIABLE = "BENCH_SCALING"  # 0: `make bench` leaves this phase out
OUTPUT_NAME = "scaling.json"
RSS_SAMPLE_SECONDS = 0.25
IDLE_TIMEOUT_SECONDS = 120

if TYPE_CHECKING:
    from bench.dataset import Dataset


def _ints(name: str, default: str) -> tuple[int, ...]:
    return tuple(int(part) for part in os.environ.get(name, default).split(",") if part.strip())


@dataclass(frozen=True)
class ScalingConfig:
    workers: tuple[int, ...]  # (a) Celery prefork processes tried
    intents: int  # (a) PENDING intents drained per worker count
    web: tuple[int, ...]  # (b) granian processes tried
    e2e_seconds: float  # (b) load per web count
    backlogs: tuple[int, ...]  # (c) backlog sizes, smallest first

    @classmethod
    def from_env(cls) -> ScalingConfig:
        return cls(
            workers=_ints("BENCH_SCALING_WORKERS", "1,2,4"),
            intents=int(os.environ.get("BENCH_SCALING_INTENTS", 50_000)),
            web=_ints("BENCH_SCALING_WEB", "1,2"),
            e2e_seconds=float(os.environ.get("BENCH_SCALING_E2E_SECONDS", 10.0)),
            backlogs=tuple(sorted(_ints("BENCH_SCALING_BACKLOGS", "10000,100000,1000000"))),
        )


def enabled() -> bool:
    return os.environ.get(ENABLE_VARIABLE, "1") != "0"


# ---------------------------------------------------------------------------------------------- services


def _purge_queues() -> None:
    """Messages a configuration left (settle messages whose intents a drain settled first, wakes) must
    not start the next one's drain before its clock does. Run with no worker consuming."""
    from tasks.settlement import SETTLE_WAKE
    from workers.app import app

    app.control.purge()
    SETTLE_WAKE.started()  # forget a wake that was published and then purged


def _queued() -> int:
    """Messages waiting in the worker's two queues (all priority levels)."""
    from celeryconfig import MAINTENANCE_QUEUE, SETTLEMENT_QUEUE
    from workers.app import app

    with app.connection_for_read() as connection:
        channel = connection.default_channel
        return sum(channel.queue_declare(queue=name).message_count for name in (SETTLEMENT_QUEUE, MAINTENANCE_QUEUE))


def wait_idle(timeout_seconds: float) -> bool:
    """Until the running worker has nothing queued, running, reserved or scheduled: a settle message
    left over from the last drain (its intents settled by another message's drain) would otherwise
    drain the next backlog while it is inserted, before that drain's clock starts."""
    from workers.app import app

    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not _queued():
            # One worker consumes these queues: its reply ends each call (limit), not the timeout.
            inspect = app.control.inspect(timeout=2, limit=1)
            replies = (inspect.active(), inspect.reserved(), inspect.scheduled())
            if not any(tasks for reply in replies for tasks in (reply or {}).values()):
                return True
        time.sleep(0.25)
    return False


@contextmanager
def _running(*, worker_processes: int = 0, web_processes: int = 0) -> Iterator[Any]:
    """The Procfile's worker with `worker_processes` prefork children (0: as configured), or, with
    `web_processes`, its web alone with that many granian processes; stopped on the way out, and the
    queues purged around a worker."""
    from bench.services import Services

    env = dict(os.environ)
    if web_processes:
        env["WEB_PROCESSES"] = str(web_processes)
    services = Services(env)
    if not web_processes:
        _purge_queues()
    try:
        if web_processes:
            services.start_web()
        else:
            services.start_worker(worker_processes)
        services.start_sampling()
        yield services
    finally:
        services.stop()
        if not web_processes:
            _purge_queues()


def _peak(services: Any) -> dict[str, float]:
    """The largest peak of one of a worker's processes over its whole life (VmHWM)."""
    return {"worker_peak_process_mib": services.memory.peak_process_kib.get("worker", 0) / MIB}


class RssDuring:
    """The worker's resident memory sampled from /proc while a drain runs: its tree's total before,
    the most the tree held at once and the most one of its processes held (current VmRSS, so a
    worker kept from one backlog to the next reports each drain's own peak)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before_kib = self.tree_max_kib = self.process_max_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sizes(self) -> list[int]:
        from bench.services import _status_kib
        from ops.processes import process_tree

        return [_status_kib(pid, "VmRSS") for pid in process_tree(self.pid)]

    def _sample(self) -> None:
        while True:
            sizes = self._sizes()
            self.tree_max_kib = max(self.tree_max_kib, sum(sizes))
            self.process_max_kib = max([self.process_max_kib, *sizes])
            if self._stop.wait(RSS_SAMPLE_SECONDS):
                return

    def __enter__(self) -> RssDuring:
        self.before_kib = sum(self._sizes())
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def as_dict(self) -> dict[str, float]:
        return {
            "worker_tree_before_mib": self.before_kib / MIB,
            "worker_tree_max_mib": self.tree_max_kib / MIB,
            "worker_process_max_mib": self.process_max_kib / MIB,
        }


def cpu_meter(*services: Any) -> Any:
    """CPU seconds used so far by each service's processes and this one (bench/services.py), for one
    measurement of two calls. Postgres's is what its processes alive at the second call used since
    the first (0 at the first), machine-wide as in `make bench`: a sum over whichever processes are
    alive at each call goes negative when other databases' backends end in between."""
    from bench.services import _cpu_seconds, _postgres_pids

    first: dict[int, float] = {}

    def meter() -> dict[str, float]:
        used = {name: value for s in services for name, value in s.cpu_seconds().items()}
        now = {pid: _cpu_seconds(pid) for pid in _postgres_pids()}
        if not first:
            first.update(now)
            used["postgres"] = 0.0
        else:
            used["postgres"] = sum(max(0.0, value - first.get(pid, 0.0)) for pid, value in now.items())
        return used

    return meter


def _cpu_ms_per_intent(before: dict[str, float], after: dict[str, float], intents: int) -> dict[str, float]:
    return {name: 1000 * (after[name] - before.get(name, 0.0)) / max(intents, 1) for name in after}


# ---------------------------------------------------------------------------------------------- the drain


def insert_backlog(dsn: str, data: Dataset, n: int, tag: str) -> list[Any]:
    """`n` PENDING transfers, uniform over the wallets, set-based in chunks: their ids."""
    from bench.engine import insert_pending

    ids: list[Any] = []
    while len(ids) < n:
        # A few rows of a chunk are dropped (a source drawn as its own destination): ask again for them.
        ids += insert_pending(dsn, data, min(INSERT_CHUNK, n - len(ids)), hot=False, tag=tag)
    return ids


def _parts(dsn: str, tag: str, started: Any, parts: int) -> list[float]:
    """Settled per second in each of `parts` equal slices of the drain's time, from `started` to the
    last completion: a drain that slows as its backlog shrinks (or as what it left behind grows)
    settles fewer in its last slice than in its first."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute(
            "SELECT extract(epoch FROM max(completed_at) - %(started)s) FROM transactions"
            " WHERE description = %(tag)s AND completed_at IS NOT NULL",
            {"tag": tag, "started": started},
        ).fetchone()
        span = float(row[0]) if row and row[0] else 0.0
        if span <= 0:
            return [0.0] * parts
        counts: dict[int, int] = dict(
            connection.execute(
                "SELECT least(width_bucket(extract(epoch FROM completed_at - %(started)s), 0, %(span)s, %(parts)s),"
                "             %(parts)s), count(*)"
                "  FROM transactions WHERE description = %(tag)s AND completed_at IS NOT NULL GROUP BY 1",
                {"tag": tag, "started": started, "span": span, "parts": parts},
            ).fetchall()
        )
    return [counts.get(i + 1, 0) / (span / parts) for i in range(parts)]


def drain(dsn: str, services: Any, ids: list[Any], tag: str, timeout_seconds: float) -> dict[str, Any]:
    """Publish the engine phase's messages for these PENDING intents and wait until every one is final
    and every event is relayed (bench/engine.py's `run`, measured with this module's figures)."""
    from settings import get_settings
    from tasks.settlement import enqueue_settlement

    batch = get_settings().settle_batch_size_max
    meter = cpu_meter(services)
    cpu_before = meter()
    with RssDuring(services.processes["worker"].pid) as rss:
        started = database_now(dsn)
        for start in range(0, len(ids), batch):
            assert enqueue_settlement(ids[start : start + batch]), "the broker refused a publish"
        finished = wait_until_quiet(dsn, timeout_seconds)
    cpu_after = meter()
    result = settled(dsn, tag, since=started)
    last_published = published_by(dsn, started)
    span = (last_published - started).total_seconds() if last_published is not None else result["span_seconds"]
    span = max(span, result["span_seconds"])
    parts = _parts(dsn, tag, started, PARTS)
    return {
        **result,
        "finished": finished,
        "per_second_to_published": result["intents"] / span if span > 0 else 0.0,
        "parts_per_second": parts,
        "first_part_per_second": parts[0],
        "last_part_per_second": parts[-1],
        "cpu_ms_per_intent": _cpu_ms_per_intent(cpu_before, cpu_after, result["intents"]),
        **rss.as_dict(),
    }


def _timeout(config: BenchConfig, n: int) -> float:
    return max(config.settle_timeout_seconds, n / SLOWEST_RATE)


# ---------------------------------------------------------------------------------------------- phases


def worker_phase(dsn: str, data: Dataset, config: BenchConfig, scaling: ScalingConfig) -> list[dict[str, Any]]:
    """(a) The same drain with 1, 2, 4 ... prefork processes, a worker started afresh for each."""
    out = []
    for processes in scaling.workers:
        tag = f"bench-scaling-workers-{processes}"
        ids = insert_backlog(dsn, data, scaling.intents, tag)
        vacuum(dsn)
        with _running(worker_processes=processes) as services:
            found = drain(dsn, services, ids, tag, _timeout(config, len(ids)))
        out.append({"processes": processes, **found, **_peak(services)})
        print(f"scaling: {processes} worker process(es): {found['settled_per_second']:,.0f}/s", flush=True)
    return out


def web_phase(
    dsn: str, data: Dataset, config: BenchConfig, scaling: ScalingConfig, worker: Any
) -> list[dict[str, Any]]:
    """(b) Single transfers over HTTP, the same clients, 1, 2 ... granian processes, a web started
    afresh for each, the one `worker` behind them all."""
    from bench import e2e

    out = []
    for processes in scaling.web:
        tag = f"bench-scaling-web-{processes}"
        with _running(web_processes=processes) as web:
            found = e2e.phase(
                dsn, web.web_port, data, e2e.TRANSFER_PATH, e2e.single_body(data, False, tag), tag,
                clients=config.e2e_clients, seconds=scaling.e2e_seconds, rate_per_second=None,
                timeout_seconds=config.settle_timeout_seconds, cpu_meter=cpu_meter(worker, web),
            )  # fmt: skip
        out.append({"processes": processes, **found})
        print(
            f"scaling: {processes} web process(es): {found['http']['accepted_per_second']:,.0f} accepted/s, "
            f"{found['database']['settled_per_second']:,.0f} settled/s",
            flush=True,
        )
    return out


def backlog_phase(
    dsn: str, data: Dataset, config: BenchConfig, scaling: ScalingConfig, worker: Any
) -> list[dict[str, Any]]:
    """(c) Backlogs of growing size, each inserted while the `worker` is idle, then drained by it. One
    worker for all: it lives on from backlog to backlog as a deployed one does, so memory that a
    large backlog leaves behind shows in the next row."""
    out = []
    for n in scaling.backlogs:
        tag = f"bench-scaling-backlog-{n}"
        if not wait_idle(IDLE_TIMEOUT_SECONDS):
            raise RuntimeError("the worker did not become idle before the next backlog")
        began = time.monotonic()
        ids = insert_backlog(dsn, data, n, tag)
        inserted = time.monotonic() - began
        vacuum(dsn)
        found = drain(dsn, worker, ids, tag, _timeout(config, n))
        out.append({"backlog": len(ids), "insert_seconds": inserted, **found})
        print(
            f"scaling: backlog {len(ids):,}: {found['settled_per_second']:,.0f}/s "
            f"(first fifth {found['first_part_per_second']:,.0f}/s, last {found['last_part_per_second']:,.0f}/s), "
            f"worker RSS up to {found['worker_process_max_mib']:.0f} MiB in one process",
            flush=True,
        )
    return out


def flatness(backlog: list[dict[str, Any]]) -> dict[str, Any]:
    """The rate at the largest backlog over the rate at the smallest, and whether that is flat."""
    if len(backlog) < 2:
        return {"flat": False, "ratio": 0.0, "verdict": "fewer than two backlog sizes: no curve"}
    small, large = backlog[0], backlog[-1]
    ratio = large["settled_per_second"] / max(small["settled_per_second"], 1e-9)
    worker_cpu = [b["cpu_ms_per_intent"].get("worker", 0.0) for b in (small, large)]
    flat = ratio >= 1 - FLAT_TOLERANCE
    verdict = (
        f"{'flat' if flat else 'NOT flat'}: {large['backlog']:,} PENDING drained at {ratio:.0%} of the rate at "
        f"{small['backlog']:,} ({large['settled_per_second']:,.0f}/s vs {small['settled_per_second']:,.0f}/s; "
        f"within {FLAT_TOLERANCE:.0%} is flat); worker CPU {worker_cpu[1]:.3f} vs {worker_cpu[0]:.3f} ms/intent, "
        f"largest worker process {large['worker_process_max_mib']:.0f} vs {small['worker_process_max_mib']:.0f} MiB"
    )
    return {
        "smallest": small["backlog"],
        "largest": large["backlog"],
        "ratio": ratio,
        "tolerance": FLAT_TOLERANCE,
        "flat": flat,
        "verdict": verdict,
    }


def measure(dsn: str, data: Dataset, config: BenchConfig, scaling: ScalingConfig) -> dict[str, Any]:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results: dict[str, Any] = {"config": {**asdict(scaling), "wallets": len(data.wallets)}, "load_before": load}
    results["workers"] = worker_phase(dsn, data, config, scaling)
    with _running() as worker:  # the configured concurrency, for the web and backlog phases
        results["web"] = web_phase(dsn, data, config, scaling, worker)
        results["backlog"] = backlog_phase(dsn, data, config, scaling, worker)
    results["flat"] = flatness(results["backlog"])
    results["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return results


# ---------------------------------------------------------------------------------------------- report


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _cpu(phase: dict[str, Any], *names: str) -> str:
    cpu = phase.get("cpu_ms_per_intent") or {}
    return " / ".join(f"{cpu.get(name, 0.0):.2f}" for name in names)


def tables(results: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of each of the three tables."""
    workers = [
        [
            str(w["processes"]),
            _rate(w["settled_per_second"]),
            _rate(w["per_second_to_published"]),
            f"{w['intents']:,}" + ("" if not w["pending"] else f" ({w['pending']:,} left PENDING)"),
            _cpu(w, "worker", "postgres"),
            f"{w['worker_peak_process_mib']:.0f} MiB",
        ]
        for w in results["workers"]
    ]
    web = [
        [
            str(w["processes"]),
            str(w["clients"]),
            _rate(w["http"]["accepted_per_second"]),
            _rate(w["database"]["settled_per_second"]),
            " / ".join(f"{w['database']['latency_ms'][p]:,.0f}" for p in ("p50", "p99")),
            _cpu(w, "web", "worker", "postgres"),
        ]
        for w in results["web"]
    ]
    backlog = [
        [
            f"{b['backlog']:,}",
            _rate(b["settled_per_second"]),
            _rate(b["first_part_per_second"]),
            _rate(b["last_part_per_second"]),
            _rate(b["per_second_to_published"]),
            _cpu(b, "worker", "postgres"),
            f"{b['worker_process_max_mib']:.0f} MiB",
            f"{b['worker_tree_before_mib']:.0f} -> {b['worker_tree_max_mib']:.0f} MiB",
        ]
        + ([] if not b["pending"] else [f"{b['pending']:,} left PENDING"])
        for b in results["backlog"]
    ]
    return [
        (
            f"engine drain by worker processes (Celery prefork children), {results['config']['intents']:,} PENDING",
            ["processes", "settled", "to last event", "intents", "CPU ms/intent worker/pg", "worker peak"],
            workers,
        ),
        (
            "end to end, single transfers over HTTP, by web processes (granian)",
            ["processes", "clients", "accepted", "settled", "ms p50/p99", "CPU ms/intent web/worker/pg"],
            web,
        ),
        (
            "engine drain by backlog size (configured worker concurrency)",
            [
                "PENDING",
                "settled",
                f"first 1/{PARTS}",
                f"last 1/{PARTS}",
                "to last event",
                "CPU ms/intent worker/pg",
                "largest worker process",
                "worker tree RSS before -> max",
            ],
            backlog,
        ),
    ]


def render(results: dict[str, Any]) -> list[str]:
    lines = [f"scaling (uniform traffic over {results['config']['wallets']:,} wallets):"]
    for title, header, rows in tables(results):
        widths = [max(len(r[i]) if i < len(r) else 0 for r in [header, *rows]) for i in range(len(header))]
        lines += ["", f"  {title}"]
        lines += ["    " + "  ".join(cell.rjust(widths[i]) for i, cell in enumerate(header))]
        lines += [
            "    " + "  ".join(cell.rjust(widths[i]) if i < len(widths) else cell for i, cell in enumerate(row))
            for row in rows
        ]
    lines += ["", f"  backlog curve: {results['flat']['verdict']}"]
    lines += [f"  load average before {results['load_before']}, after {results['load_after']}"]
    return lines


def goals(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The flat-curve goal in `make bench`'s form: (goal, measured, met)."""
    flat = results.get("flat")
    if not flat or "largest" not in flat:
        return []
    return [
        (
            f"engine rate at a {flat['largest']:,}-intent backlog within {flat['tolerance']:.0%} "
            f"of its rate at {flat['smallest']:,}",
            f"{flat['ratio']:.0%}",
            bool(flat["flat"]),
        )
    ]


# ---------------------------------------------------------------------------------------------- entry points


def run_alone(output_dir: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`make bench`'s hook: this module in a process of its own (its database, its Redis database and
    the caches bound to them are its own), its table on this stdout; what it wrote, read back."""
    finished = subprocess.run(
        [sys.executable, "-m", "bench.scaling"],
        env={**(env if env is not None else os.environ), "BENCH_OUTPUT_DIR": str(output_dir)},
        check=False,
    )
    if finished.returncode != 0:
        raise RuntimeError(f"python -m bench.scaling exited with {finished.returncode}")
    return dict(json.loads((output_dir / OUTPUT_NAME).read_text()))


def main() -> int:
    from bench import dataset
    from tests import environment

    config = BenchConfig.from_env()
    scaling = ScalingConfig.from_env()
    env = environment.prepare()
    os.environ.update({"DATABASE_URL": env.database_url, "REDIS_URL": env.redis_url})
    os.environ.setdefault("VAULTCRAFT_BCRYPT_ROUNDS", "4")  # one signup and a login per web count
    try:
        from ops.migrate import upgrade_to_head

        upgrade_to_head(env.database_url)
        data = dataset.create(env.database_url, config.wallets)
        results = measure(env.database_url, data, config, scaling)
    finally:
        from models.db import dispose_engine

        dispose_engine()
        environment.tear_down(env)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    path = config.output_dir / OUTPUT_NAME
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print("\n".join(render(results)) + f"\n\nwrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
