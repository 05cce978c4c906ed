"""The bench's table, ratios and goals on stdout, results.json, and a PNG plot (if matplotlib is there)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODES = ("uniform", "hot")
ENGINE_UNIFORM_GOAL = 3  # engine settled rate over the pgbench baseline's, uniform traffic
ENGINE_HOT_GOAL = 9  # and with one hot destination wallet
BULK_GOAL_SECONDS = 60  # the bulk goal holds over phases this long (BENCH_BULK_SECONDS)
HOLD_GOAL = 0.8  # hold and capture settled rates over the transfer engine's, same run, each distribution
LIMIT_GOAL = 0.8  # engine settled rate, counted until its last event is published, over the set-based probe's
EXPIRY_GOAL_SECONDS = 10  # holds due at the same second: all EXPIRED within this long after it
WEBHOOK_RATE_GOAL = 500  # deliveries per second to a receiver that answers at once
WEBHOOK_ENGINE_GOAL = 0.9  # the engine's settled rate while delivering, over its rate alone
WEBHOOK_P99_GOAL_MS = 500  # accepted -> received at half the delivery rate
WEBHOOK_DEAD_GOAL = 0.9  # the others' delivery rate with one endpoint always timing out, over without


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _latency(latency: dict[str, float]) -> str:
    return " / ".join(f"{latency[p]:,.0f}" for p in ("p50", "p95", "p99"))


def _cpu(phase: dict[str, Any]) -> str:
    """Where a phase's CPU went, per settled intent (blank for results written before it was measured)."""
    cpu = phase.get("cpu_ms_per_intent") or {}
    return " / ".join(f"{cpu.get(name, 0):.2f}" for name in ("web", "worker", "postgres", "load"))


def _ratio(results: dict[str, Any], figure: str) -> tuple[str, ...]:
    return tuple(f"{results['ratios'][f'{figure}_{m}']:.1f}x" for m in MODES)


def rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """(figure, uniform, hot) rows of the table. Every ratio is over the pgbench baseline."""
    engine, e2e, bulk = (results[k] for k in ("engine", "e2e", "bulk"))
    pgbench, python = results["baseline"]["pgbench"], results["baseline"]["python_clients"]
    table = [
        (
            "baseline: pgbench, row-lock txn per transfer",
            *(f"{_rate(pgbench[m]['per_second'])} ({pgbench[m]['clients']} clients)" for m in MODES),
        ),
        ("baseline pgbench latency ms p50/p95/p99", *(_latency(pgbench[m]["latency_ms"]) for m in MODES)),
        (
            "baseline: Python client processes (best count)",
            *(f"{_rate(python[m]['per_second'])} ({python[m]['clients']} clients)" for m in MODES),
        ),
        ("baseline Python latency ms p50/p95/p99", *(_latency(python[m]["latency_ms"]) for m in MODES)),
        (
            "engine: PENDING intents drained by Celery workers",
            *(f"{_rate(engine[m]['settled_per_second'])} ({engine[m]['intents']:,})" for m in MODES),
        ),
        *_limit_rows(results),
        ("engine / pgbench baseline", *_ratio(results, "engine")),
        (
            "engine / Python-client baseline",
            *(f"{results['ratios_python_clients'][f'engine_{m}']:.1f}x" for m in MODES),
        ),
        *_hold_rows(results),
        ("e2e single transfers: accepted", *(_rate(e2e[m]["max"]["http"]["accepted_per_second"]) for m in MODES)),
        ("e2e single transfers: settled", *(_rate(e2e[m]["max"]["database"]["settled_per_second"]) for m in MODES)),
        ("e2e settled / pgbench baseline", *_ratio(results, "e2e")),
        (
            "e2e at max load: accepted->COMPLETED ms",
            *(_latency(e2e[m]["max"]["database"]["latency_ms"]) for m in MODES),
        ),
        (
            "e2e at half load: offered rate",
            *(_rate(e2e[m]["half"]["offered_per_second"] or 0) for m in MODES),
        ),
        (
            "e2e at half load: accepted->COMPLETED ms",
            *(_latency(e2e[m]["half"]["database"]["latency_ms"]) for m in MODES),
        ),
        ("bulk intake: accepted", *(_rate(bulk[m]["http"]["accepted_per_second"]) for m in MODES)),
        ("bulk intake: settled", *(_rate(bulk[m]["database"]["settled_per_second"]) for m in MODES)),
        ("bulk settled / pgbench baseline", *_ratio(results, "bulk")),
        ("bulk: accepted->COMPLETED ms", *(_latency(bulk[m]["database"]["latency_ms"]) for m in MODES)),
        ("e2e CPU ms per intent: web/worker/postgres/load", *(_cpu(e2e[m]["max"]) for m in MODES)),
        ("bulk CPU ms per intent: web/worker/postgres/load", *(_cpu(bulk[m]) for m in MODES)),
    ]
    table += _webhook_rows(results)
    rss = results["rss"]
    table.append(
        ("peak RSS, largest process", f"web {rss['web_peak_mib']:.0f} MiB", f"worker {rss['worker_peak_mib']:.0f} MiB")
    )
    table.append(
        (
            "worker tree RSS: start of engine run -> end of run",
            f"{rss['worker_total_first_mib']:.0f} MiB",
            f"{rss['worker_total_last_mib']:.0f} MiB",
        )
    )
    return table


def _limit_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """The set-based probe beside pgbench, and the engine's share of it."""
    if "limit" not in results:
        return []  # results written before the limit row
    probe, ratios, engine = results["limit"], results["limit_ratios"], results["engine"]
    return [
        (
            "limit: set-based SQL, batches of 1,000, one connection",
            *(f"{_rate(probe[m]['settled_per_second'])} ({probe[m]['intents']:,})" for m in MODES),
        ),
        ("limit / pgbench baseline", *(f"{ratios[f'limit_{m}']:.1f}x" for m in MODES)),
        ("engine until its last event is published", *(_rate(engine[m]["per_second_to_published"]) for m in MODES)),
        ("engine (to last event published) / limit", *(f"{ratios[f'engine_{m}']:.0%}" for m in MODES)),
    ]


def _limit_goals(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    if "limit" not in results:
        return []
    ratios = results["limit_ratios"]
    return [
        (
            f"engine {m} >= {LIMIT_GOAL:.0%} of the set-based limit {m} (relay running, to the last event)",
            f"{ratios[f'engine_{m}']:.0%}",
            ratios[f"engine_{m}"] >= LIMIT_GOAL,
        )
        for m in MODES
    ]


def _hold_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Holds and captures drained as the engine's transfers are, each next to the engine's rate."""
    holds, ratios = results["holds"], results["hold_ratios"]
    table: list[tuple[str, ...]] = []
    labels = {
        "hold": "holds: PENDING holds drained to HELD",
        "capture": "captures: PENDING captures drained (half partial)",
    }
    for figure, label in labels.items():
        table.append(
            (
                label,
                *(f"{_rate(holds[m][figure]['settled_per_second'])} ({holds[m][figure]['intents']:,})" for m in MODES),
            )
        )
        table.append((f"{figure}s / transfer engine", *(f"{ratios[f'{figure}_{m}']:.0%}" for m in MODES)))
    table.append(
        ("voids after partial captures (ledger call)", *(_rate(holds[m]["void"]["per_second"]) for m in MODES))
    )
    expiry = holds["expiry"]
    table.append(
        (
            f"expiry: {expiry['holds']:,} holds due at one second, s after it (median / last)",
            f"{expiry['median_expired_after_seconds']:.1f}",
            f"{expiry['last_expired_after_seconds']:.1f}",
        )
    )
    return table


def _webhook_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """One column: the webhook phases run on uniform traffic only (the second column is blank)."""
    hooks = results.get("webhooks")
    if not hooks:
        return []
    full, half, dead = hooks["throughput"], hooks["half"], hooks["one_dead"]
    return [
        (
            f"webhooks: deliveries/s to {full['endpoints']} endpoints answering at once",
            f"{_rate(full['deliveries_per_second'])} ({full['deliveries']:,}/{full['deliveries_expected']:,})",
            "",
        ),
        (
            "webhooks: engine settled meanwhile / alone",
            f"{_rate(full['engine_settled_per_second'])} / {_rate(hooks['engine_alone_per_second'])}",
            "",
        ),
        (
            f"webhooks at half load ({_rate(half['offered_deliveries_per_second'])}): accepted->received ms",
            _latency(half["latency_ms"]),
            "",
        ),
        (
            "webhooks: deliveries/s with one endpoint always timing out",
            f"{_rate(dead['deliveries_per_second'])} ({dead['deliveries']:,}/{dead['deliveries_expected']:,})",
            "",
        ),
    ]


def _webhook_goals(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    hooks = results.get("webhooks")
    if not hooks:
        return []
    full, half, dead = hooks["throughput"], hooks["half"], hooks["one_dead"]
    engine_share = full["engine_settled_per_second"] / max(hooks["engine_alone_per_second"], 1e-9)
    dead_share = dead["deliveries_per_second"] / max(full["deliveries_per_second"], 1e-9)
    complete = full["all_delivered"] and dead["all_delivered"]
    return [
        (
            f"webhooks >= {WEBHOOK_RATE_GOAL} deliveries/s, every one delivered",
            f"{_rate(full['deliveries_per_second'])}, {full['deliveries']:,} of {full['deliveries_expected']:,}",
            full["deliveries_per_second"] >= WEBHOOK_RATE_GOAL and complete,
        ),
        (
            f"engine keeps >= {WEBHOOK_ENGINE_GOAL:.0%} of its rate while webhooks are delivered",
            f"{engine_share:.0%}",
            engine_share >= WEBHOOK_ENGINE_GOAL,
        ),
        (
            f"webhooks p99 <= {WEBHOOK_P99_GOAL_MS} ms accepted->received at half load",
            f"{half['latency_ms']['p99']:,.0f} ms",
            half["latency_ms"]["p99"] <= WEBHOOK_P99_GOAL_MS,
        ),
        (
            f"one endpoint always timing out lowers the others' rate by < {1 - WEBHOOK_DEAD_GOAL:.0%}",
            f"{dead_share:.0%} of the rate without it",
            dead_share >= WEBHOOK_DEAD_GOAL,
        ),
    ]


def _hold_goals(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    ratios, expiry = results["hold_ratios"], results["holds"]["expiry"]
    found = [
        (
            f"{figure}s {m} >= {HOLD_GOAL:.0%} of the transfer engine {m}",
            f"{ratios[f'{figure}_{m}']:.0%}",
            ratios[f"{figure}_{m}"] >= HOLD_GOAL,
        )
        for figure in ("hold", "capture")
        for m in MODES
    ]
    all_expired = expiry["still_held"] == 0 and expiry["expired"] == expiry["holds"]
    last = expiry["last_expired_after_seconds"]
    measured = f"{expiry['expired']:,} of {expiry['holds']:,} expired, the last {last:.1f} s after"
    found.append(
        (
            f"expiry of {expiry['holds']:,} holds due at the same second done within {EXPIRY_GOAL_SECONDS} s",
            measured,
            all_expired and last <= EXPIRY_GOAL_SECONDS,
        )
    )
    return found


def goals(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(goal, measured, met) per goal. They report; they never fail the run."""
    ratios, e2e, bulk = results["ratios"], results["e2e"], results["bulk"]
    settled = min(e2e[m]["max"]["database"]["settled_per_second"] for m in MODES)
    p99 = max(e2e[m]["half"]["database"]["latency_ms"]["p99"] for m in MODES)
    bulk_settled = min(bulk[m]["database"]["settled_per_second"] for m in MODES)
    bulk_seconds = results["config"]["bulk_seconds"]
    # A shorter phase ends before the backlog it builds has cost it anything: it says nothing of the goal.
    sustained = bulk_seconds >= BULK_GOAL_SECONDS
    bulk_value = f"{_rate(bulk_settled)} in {bulk_seconds:g} s phases" + (
        "" if sustained else f" (shorter than {BULK_GOAL_SECONDS} s: not the goal's measure)"
    )
    return [
        (
            f"engine uniform >= {ENGINE_UNIFORM_GOAL}x pgbench baseline uniform",
            f"{ratios['engine_uniform']:.1f}x",
            ratios["engine_uniform"] >= ENGINE_UNIFORM_GOAL,
        ),
        (
            f"engine hot >= {ENGINE_HOT_GOAL}x pgbench baseline hot",
            f"{ratios['engine_hot']:.1f}x",
            ratios["engine_hot"] >= ENGINE_HOT_GOAL,
        ),
        *_limit_goals(results),
        ("e2e >= 600 settled/s sustained", _rate(settled), settled >= 600),
        ("e2e p99 <= 250 ms at half load", f"{p99:,.0f} ms", p99 <= 250),
        (
            f"bulk >= 8,000 intents/s settled, sustained over {BULK_GOAL_SECONDS} s phases",
            bulk_value,
            sustained and bulk_settled >= 8000,
        ),
        *_hold_goals(results),
        *_console_goals(results),
        *_webhook_goals(results),
        *_scaling_goals(results),
    ]


def _scaling_goals(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Issue 23: the engine's rate flat against the size of its backlog (bench/scaling.py)."""
    if not results.get("scaling"):
        return []
    from bench import scaling

    return scaling.goals(results["scaling"])


def _console_goals(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Issue 22: every console page <= 300 ms p95 over the bench's generated organisations."""
    console = results.get("console")
    if not console:
        return []
    goal = console["goal"]
    scale = f" ({console['organizations']} organisations, {console['transactions']:,} transactions)"
    return [(goal["goal"] + scale, goal["measured"], goal["met"])]


def render(results: dict[str, Any]) -> str:
    table = rows(results)
    width = max(len(r[0]) for r in table)
    cells = max(len(c) for r in table for c in r[1:])
    lines = [f"{'figure':<{width}}  {'uniform':>{cells}}  {'hot wallet':>{cells}}"]
    lines += [f"{a:<{width}}  {b:>{cells}}  {c:>{cells}}" for a, b, c in table]
    lines += ["", "goals (2 cores):"]
    lines += [f"  [{'met' if ok else 'NOT met'}] {name}: {value}" for name, value, ok in goals(results)]
    if results.get("console"):
        lines += ["", "console pages (p50 / p95 ms):"]
        lines += [
            f"  {path}: {page['p50_ms']:.0f} / {page['p95_ms']:.0f}  {page['statuses']}"
            for path, page in results["console"]["pages"].items()
        ]
        lines += ["console queries at that size (EXPLAIN ANALYZE):"]
        lines += [
            f"  {q['query']}: {q['ms']:.1f} ms"
            + (
                ""
                if not q["sequential_scans_of_large_tables"]
                else f"  SEQ SCAN {q['sequential_scans_of_large_tables']}"
            )
            for q in results["console"]["queries"]
        ]
    if results.get("scaling"):
        from bench import scaling

        lines += ["", *scaling.render(results["scaling"])]
    machine = results["machine"]
    lines += ["", f"machine: {machine['cpus']} cores, {machine['cpu_model']}; load before {machine['load_before']}"]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, (rates, latencies) = plt.subplots(1, 2, figsize=(13, 5))
    throughput = {
        "baseline pgbench": [results["baseline"]["pgbench"][m]["per_second"] for m in MODES],
        "baseline Python clients": [results["baseline"]["python_clients"][m]["per_second"] for m in MODES],
        "limit (set-based SQL)": [results["limit"][m]["settled_per_second"] for m in MODES],
        "engine": [results["engine"][m]["settled_per_second"] for m in MODES],
        "e2e settled": [results["e2e"][m]["max"]["database"]["settled_per_second"] for m in MODES],
        "bulk settled": [results["bulk"][m]["database"]["settled_per_second"] for m in MODES],
    }
    ratio_of = {"engine": "engine", "e2e settled": "e2e", "bulk settled": "bulk"}
    width = 1 / (len(throughput) + 1)
    for offset, (name, values) in enumerate(throughput.items()):
        xs = [x + offset * width for x in range(len(MODES))]
        rates.bar(xs, values, width=width, label=name)
        if name in ratio_of:  # each settled rate over the pgbench baseline, on its bar
            for x, value, mode in zip(xs, values, MODES, strict=True):
                ratio = results["ratios"][f"{ratio_of[name]}_{mode}"]
                rates.annotate(f"{ratio:.1f}x", (x, value), ha="center", va="bottom", fontsize=7)
    rates.set_xticks([x + width * (len(throughput) - 1) / 2 for x in range(len(MODES))], list(MODES))
    rates.set_ylabel("transfers settled per second")
    rates.set_title("throughput (Nx: over the pgbench baseline)")
    rates.legend(fontsize=8)
    # Labels on three short lines: on one or two they run into their neighbours at this width.
    series = {
        "pgbench\ntxn": [results["baseline"]["pgbench"][m]["latency_ms"] for m in MODES],
        "Python\ntxn": [results["baseline"]["python_clients"][m]["latency_ms"] for m in MODES],
        "e2e\nhalf load": [results["e2e"][m]["half"]["database"]["latency_ms"] for m in MODES],
        "e2e\nmax load": [results["e2e"][m]["max"]["database"]["latency_ms"] for m in MODES],
        "bulk\n": [results["bulk"][m]["database"]["latency_ms"] for m in MODES],
    }
    labels = [f"{name}\n{mode}" for name in series for mode in MODES]
    flat = [latency for values in series.values() for latency in values]
    for offset, quantile in enumerate(("p50", "p95", "p99")):
        latencies.bar([x + offset * 0.27 for x in range(len(flat))], [max(v[quantile], 0.01) for v in flat], 0.27)
    latencies.set_xticks([x + 0.27 for x in range(len(flat))], labels, fontsize=7)
    latencies.set_yscale("log")
    latencies.set_ylabel("ms, accepted -> final (baseline: one transaction)")
    latencies.set_title("latency p50 / p95 / p99")
    latencies.legend(["p50", "p95", "p99"])
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write(results: dict[str, Any], output_dir: Path) -> str:
    output_dir.mkdir(parents=True, exist_ok=True)
    results = {**results, "goals": [{"goal": g, "measured": v, "met": ok} for g, v, ok in goals(results)]}
    (output_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = render(results)
    plotted = plot(results, output_dir / "results.png")
    text += f"\n\nwrote {output_dir / 'results.json'}" + (
        f" and {output_dir / 'results.png'}" if plotted else " (no plot: install the `bench` extra for matplotlib)"
    )
    return text
