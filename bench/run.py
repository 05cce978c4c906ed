"""`make bench`: one run, one fresh database, every figure of issue 3, then the table and ratios.

    python -m bench.run        (sizes and durations: bench/config.py, overridable by BENCH_* variables)

Then, unless BENCH_SCALING=0, the scaling table (bench/scaling.py, issue 23) on a database of its own.

Starts its own services like the test suite does: a fresh database on the embedded Postgres (or on
DATABASE_URL's server), its own Redis database, the Procfile's worker and web commands.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from bench.config import BenchConfig
from bench.measure import vacuum
from bench.report import MODES
from tests import environment

MIB = 1024


def _machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {"cpus": os.cpu_count(), "cpu_model": model, "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def _baseline(dsn: str, data: Any, config: BenchConfig) -> dict[str, Any]:
    """The same row-lock transaction per transfer, run by pgbench (the reference every ratio is stated
    against) and by Python client processes (the figure earlier runs were compared with)."""
    from bench import baseline, pgbench

    measured: dict[str, Any] = {"pgbench": {}, "python_clients": {}}
    pgbench.prepare_wallets(dsn, data.wallets, data.hot_wallet)
    try:
        for mode in MODES:
            vacuum(dsn)
            job = pgbench.Job(
                dsn=dsn,
                organization_id=data.organization_id,
                user_id=data.user_id,
                wallet_count=len(data.wallets),
                hot=mode == "hot",
                seconds=pgbench.whole_seconds(config.baseline_seconds),
                clients=config.pgbench_clients_hot if mode == "hot" else config.pgbench_clients_uniform,
                tag=f"bench-baseline-pgbench-{mode}",
            )
            measured["pgbench"][mode] = pgbench.run(job)
            result = measured["pgbench"][mode]
            print(f"baseline pgbench {mode}: {result['clients']}c {result['per_second']:,.0f}/s", flush=True)
    finally:
        pgbench.drop_wallets(dsn)
    for mode in MODES:
        vacuum(dsn)
        python_job = baseline.Job(
            dsn=dsn,
            organization_id=data.organization_id,
            user_id=data.user_id,
            wallets=data.wallets,
            hot_wallet=data.hot_wallet if mode == "hot" else None,
            seconds=config.baseline_seconds,
            seed=1,
            tag=f"bench-baseline-{mode}",
        )
        tries = [baseline.run(python_job, clients) for clients in config.baseline_clients]
        measured["python_clients"][mode] = {**max(tries, key=lambda t: t["per_second"]), "tries": tries}
        print(
            f"baseline Python clients {mode}: " + ", ".join(f"{t['clients']}c {t['per_second']:,.0f}/s" for t in tries),
            flush=True,
        )
    return measured


def _limit(dsn: str, data: Any, config: BenchConfig) -> dict[str, Any]:
    """The set-based probe on the same server and wallets: the row the engine is held to."""
    from bench import limit

    out = {}
    for mode in MODES:
        out[mode] = limit.run(dsn, data, config.engine_intents, hot=mode == "hot")
        print(f"limit (set-based SQL) {mode}: {out[mode]['settled_per_second']:,.0f}/s", flush=True)
    return out


def _engine(dsn: str, data: Any, config: BenchConfig) -> dict[str, Any]:
    from bench import engine

    out = {}
    for mode in MODES:
        out[mode] = engine.run(
            dsn, data, config.engine_intents, hot=mode == "hot", timeout_seconds=config.settle_timeout_seconds
        )
        print(f"engine {mode}: {out[mode]['settled_per_second']:,.0f}/s", flush=True)
    return out


def _holds(dsn: str, data: Any, config: BenchConfig) -> dict[str, Any]:
    from bench import holds

    out: dict[str, Any] = {}
    for mode in MODES:
        out[mode] = holds.run(
            dsn, data, config.hold_intents, hot=mode == "hot", timeout_seconds=config.settle_timeout_seconds
        )
        print(
            f"holds {mode}: {out[mode]['hold']['settled_per_second']:,.0f}/s; "
            f"captures {out[mode]['capture']['settled_per_second']:,.0f}/s",
            flush=True,
        )
    out["expiry"] = holds.expiry(
        dsn,
        data,
        config.expiry_holds,
        lead_seconds=config.expiry_lead_seconds,
        timeout_seconds=config.settle_timeout_seconds,
    )
    print(f"expiry: last of {out['expiry']['holds']:,} after {out['expiry']['last_expired_after_seconds']:.1f} s")
    return out


def hold_ratios(results: dict[str, Any]) -> dict[str, float]:
    """Hold and capture settled rates over the transfer engine's, same run, per distribution."""
    return {
        f"{figure}_{m}": results["holds"][m][figure]["settled_per_second"]
        / max(results["engine"][m]["settled_per_second"], 1e-9)
        for figure in ("hold", "capture")
        for m in MODES
    }


def _e2e(services: Any, dsn: str, data: Any, config: BenchConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    from bench import e2e

    singles: dict[str, Any] = {}
    bulk: dict[str, Any] = {}
    port = services.web_port
    common = {"timeout_seconds": config.settle_timeout_seconds, "cpu_meter": services.cpu_seconds}
    for mode in MODES:
        hot = mode == "hot"
        tag = f"bench-e2e-{mode}-max"
        maximum = e2e.phase(
            dsn, port, data, e2e.TRANSFER_PATH, e2e.single_body(data, hot, tag), tag,
            clients=config.e2e_clients, seconds=config.e2e_seconds, rate_per_second=None, **common,
        )  # fmt: skip
        half_rate = max(1.0, maximum["database"]["settled_per_second"] / 2)
        tag = f"bench-e2e-{mode}-half"
        half = e2e.phase(
            dsn, port, data, e2e.TRANSFER_PATH, e2e.single_body(data, hot, tag), tag,
            clients=config.e2e_clients, seconds=config.e2e_seconds, rate_per_second=half_rate, **common,
        )  # fmt: skip
        singles[mode] = {"max": maximum, "half": half}
        tag = f"bench-bulk-{mode}"
        bulk[mode] = e2e.phase(
            dsn, port, data, e2e.BATCH_PATH, e2e.batch_body(data, hot, tag, config.bulk_size), tag,
            clients=config.bulk_clients, seconds=config.bulk_seconds, rate_per_second=None, **common,
        )  # fmt: skip
        print(
            f"e2e {mode}: {maximum['database']['settled_per_second']:,.0f} settled/s; "
            f"bulk {bulk[mode]['database']['settled_per_second']:,.0f} settled/s",
            flush=True,
        )
    return singles, bulk


def _console(services: Any, dsn: str, config: BenchConfig) -> dict[str, Any]:
    """Last: its million transactions would slow every phase after it (issue 22)."""
    from bench import console

    vacuum(dsn)
    out = console.run(
        dsn,
        services.web_port,
        organizations=config.console_organizations,
        transactions=config.console_transactions,
        requests_per_page=config.console_requests,
    )
    print(f"console: {out['goal']['measured']}", flush=True)
    return out


def _webhooks(services: Any, dsn: str, data: Any, config: BenchConfig, engine_alone: float) -> dict[str, Any]:
    from bench import webhooks
    from chaos.receiver import Behaviour, ReceiverProcess
    from settings import get_settings

    endpoints_max = get_settings().webhook_endpoints_per_organization_max
    if 3 * config.webhook_endpoints + 1 > endpoints_max:
        raise SystemExit(f"BENCH_WEBHOOK_ENDPOINTS: at most {(endpoints_max - 1) // 3} (3 phases, one organisation)")
    services.start_webhooks()
    # The always-timing-out endpoint answers a second after the sender gave up.
    behaviour = Behaviour(hang_seconds=get_settings().webhook_timeout_seconds + 1)
    common = {"timeout_seconds": config.settle_timeout_seconds}
    with ReceiverProcess(behaviour) as receiver:
        endpoints = webhooks.Endpoints(services.web_port, data.email, receiver)
        drain: dict[str, Any] = {
            "intents": config.webhook_intents,
            "endpoint_count": config.webhook_endpoints,
            "cpu_meter": services.cpu_seconds,
            **common,
        }
        full = webhooks.throughput(dsn, data, receiver, endpoints, dead=False, **drain)
        print(
            f"webhooks: {full['deliveries_per_second']:,.0f} deliveries/s to {config.webhook_endpoints} endpoints; "
            f"engine meanwhile {full['engine_settled_per_second']:,.0f}/s (alone {engine_alone:,.0f}/s)",
            flush=True,
        )
        half_rate = max(1.0, full["deliveries_per_second"] / 2 / config.webhook_endpoints)
        half = webhooks.latency(
            dsn, services.web_port, data, receiver, endpoints,
            transfers_per_second=half_rate, endpoint_count=config.webhook_endpoints,
            seconds=config.webhook_seconds, clients=config.e2e_clients, **common,
        )  # fmt: skip
        print(f"webhooks at half load: accepted->received ms p50 {half['latency_ms']['p50']:,.0f}, "
              f"p99 {half['latency_ms']['p99']:,.0f}", flush=True)  # fmt: skip
        dead = webhooks.throughput(dsn, data, receiver, endpoints, dead=True, **drain)
        print(f"webhooks with one dead endpoint: {dead['deliveries_per_second']:,.0f} deliveries/s", flush=True)
    return {"throughput": full, "half": half, "one_dead": dead, "engine_alone_per_second": engine_alone}


def _rss(services: Any) -> dict[str, float]:
    worker_series = services.memory.total_rss_kib.get("worker", [(0, 0)])
    return {
        "web_peak_mib": services.memory.peak_process_kib.get("web", 0) / MIB,
        "worker_peak_mib": services.memory.peak_process_kib.get("worker", 0) / MIB,
        "worker_total_first_mib": worker_series[0][1] / MIB,
        "worker_total_last_mib": worker_series[-1][1] / MIB,
        "worker_total_max_mib": max(v for _, v in worker_series) / MIB,
        "web_total_max_mib": max((v for _, v in services.memory.total_rss_kib.get("web", [(0, 0)])), default=0) / MIB,
    }


def limit_ratios(results: dict[str, Any]) -> dict[str, float]:
    """The limit over pgbench, and the engine (counted until its last event was published) over the limit."""
    out = {}
    for m in MODES:
        probe = max(results["limit"][m]["settled_per_second"], 1e-9)
        out[f"limit_{m}"] = probe / max(results["baseline"]["pgbench"][m]["per_second"], 1e-9)
        out[f"engine_{m}"] = results["engine"][m]["per_second_to_published"] / probe
    return out


def ratios(results: dict[str, Any], baseline: str) -> dict[str, float]:
    """Engine, end-to-end and bulk settled rates over one baseline's rate, per distribution."""
    settled = {
        "engine": {m: results["engine"][m]["settled_per_second"] for m in MODES},
        "e2e": {m: results["e2e"][m]["max"]["database"]["settled_per_second"] for m in MODES},
        "bulk": {m: results["bulk"][m]["database"]["settled_per_second"] for m in MODES},
    }
    return {
        f"{figure}_{m}": rates[m] / max(results["baseline"][baseline][m]["per_second"], 1e-9)
        for figure, rates in settled.items()
        for m in MODES
    }


def measure(config: BenchConfig, dsn: str) -> dict[str, Any]:
    from bench import dataset
    from bench.services import Services

    results: dict[str, Any] = {"machine": _machine(), "config": {**config.__dict__, "output_dir": None}}
    data = dataset.create(dsn, config.wallets)
    results["baseline"] = _baseline(dsn, data, config)
    results["limit"] = _limit(dsn, data, config)
    services = Services(dict(os.environ))
    try:
        services.start_worker(config.worker_concurrency)
        services.start_web()
        services.start_sampling()
        results["engine"] = _engine(dsn, data, config)
        results["holds"] = _holds(dsn, data, config)
        results["e2e"], results["bulk"] = _e2e(services, dsn, data, config)
        engine_alone = results["engine"]["uniform"]["settled_per_second"]
        results["webhooks"] = _webhooks(services, dsn, data, config, engine_alone)
        if config.console_organizations:
            results["console"] = _console(services, dsn, config)
    finally:
        services.stop()
    results["rss"] = _rss(services)
    results["ratios"] = ratios(results, "pgbench")
    results["ratios_python_clients"] = ratios(results, "python_clients")
    results["hold_ratios"] = hold_ratios(results)
    results["limit_ratios"] = limit_ratios(results)
    results["machine"]["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return results


def main() -> int:
    config = BenchConfig.from_env()
    given = dict(os.environ)  # the scaling phase prepares its own database from what was given
    env = environment.prepare()
    os.environ.update({"DATABASE_URL": env.database_url, "REDIS_URL": env.redis_url})
    # The webhook phases deliver to a receiver on loopback.
    os.environ["VAULTCRAFT_WEBHOOK_ALLOW_PRIVATE"] = "true"
    os.environ.setdefault("VAULTCRAFT_BCRYPT_ROUNDS", "4")  # one signup and a few logins; hashing is not measured
    try:
        from ops.migrate import upgrade_to_head

        upgrade_to_head(env.database_url)
        results = measure(config, env.database_url)
    finally:
        from models.db import dispose_engine

        dispose_engine()
        environment.tear_down(env)
    from bench import report, scaling

    if scaling.enabled():
        # Last, in a process and a database of its own: its million-intent backlog would slow every
        # phase after it, and the console's transactions would be under its drains (BENCH_SCALING=0: off).
        results["scaling"] = scaling.run_alone(config.output_dir, given)

    print(report.write(results, config.output_dir), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
