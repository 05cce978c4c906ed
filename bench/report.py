"""The bench's table, ratios and goals on stdout, results.json, and a PNG plot (if matplotlib is there)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODES = ("uniform", "hot")


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _latency(latency: dict[str, float]) -> str:
    return " / ".join(f"{latency[p]:,.0f}" for p in ("p50", "p95", "p99"))


def _cpu(phase: dict[str, Any]) -> str:
    """Where a phase's CPU went, per settled intent (blank for results written before it was measured)."""
    cpu = phase.get("cpu_ms_per_intent") or {}
    return " / ".join(f"{cpu.get(name, 0):.2f}" for name in ("web", "worker", "postgres", "load"))


def rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """(figure, uniform, hot) rows of the table."""
    base, engine, e2e, bulk = (results[k] for k in ("baseline", "engine", "e2e", "bulk"))
    table = [
        (
            "baseline: row-lock txn per transfer (best clients)",
            *(f"{_rate(base[m]['per_second'])} ({base[m]['clients']} clients)" for m in MODES),
        ),
        ("baseline latency ms p50/p95/p99", *(_latency(base[m]["latency_ms"]) for m in MODES)),
        (
            "engine: PENDING intents drained by Celery workers",
            *(f"{_rate(engine[m]['settled_per_second'])} ({engine[m]['intents']:,})" for m in MODES),
        ),
        ("engine / baseline", *(f"{results['ratios'][f'engine_{m}']:.1f}x" for m in MODES)),
        ("e2e single transfers: accepted", *(_rate(e2e[m]["max"]["http"]["accepted_per_second"]) for m in MODES)),
        ("e2e single transfers: settled", *(_rate(e2e[m]["max"]["database"]["settled_per_second"]) for m in MODES)),
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
        ("bulk: accepted->COMPLETED ms", *(_latency(bulk[m]["database"]["latency_ms"]) for m in MODES)),
        ("e2e CPU ms per intent: web/worker/postgres/load", *(_cpu(e2e[m]["max"]) for m in MODES)),
        ("bulk CPU ms per intent: web/worker/postgres/load", *(_cpu(bulk[m]) for m in MODES)),
    ]
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


def goals(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    ratios, e2e, bulk = results["ratios"], results["e2e"], results["bulk"]
    settled = min(e2e[m]["max"]["database"]["settled_per_second"] for m in MODES)
    p99 = max(e2e[m]["half"]["database"]["latency_ms"]["p99"] for m in MODES)
    bulk_rate = min(
        min(bulk[m]["http"]["accepted_per_second"], bulk[m]["database"]["settled_per_second"]) for m in MODES
    )
    return [
        ("engine uniform >= 5x baseline uniform", f"{ratios['engine_uniform']:.1f}x", ratios["engine_uniform"] >= 5),
        ("engine hot >= 12x baseline hot", f"{ratios['engine_hot']:.1f}x", ratios["engine_hot"] >= 12),
        ("e2e >= 600 settled/s sustained", _rate(settled), settled >= 600),
        ("e2e p99 <= 250 ms at half load", f"{p99:,.0f} ms", p99 <= 250),
        ("bulk >= 8,000 intents/s accepted and settled", _rate(bulk_rate), bulk_rate >= 8000),
    ]


def render(results: dict[str, Any]) -> str:
    table = rows(results)
    width = max(len(r[0]) for r in table)
    cells = max(len(c) for r in table for c in r[1:])
    lines = [f"{'figure':<{width}}  {'uniform':>{cells}}  {'hot wallet':>{cells}}"]
    lines += [f"{a:<{width}}  {b:>{cells}}  {c:>{cells}}" for a, b, c in table]
    lines += ["", "goals (2 cores):"]
    lines += [f"  [{'met' if ok else 'NOT met'}] {name}: {value}" for name, value, ok in goals(results)]
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
        "baseline": [results["baseline"][m]["per_second"] for m in MODES],
        "engine": [results["engine"][m]["settled_per_second"] for m in MODES],
        "e2e settled": [results["e2e"][m]["max"]["database"]["settled_per_second"] for m in MODES],
        "bulk settled": [results["bulk"][m]["database"]["settled_per_second"] for m in MODES],
    }
    for offset, (name, values) in enumerate(throughput.items()):
        rates.bar([x + offset * 0.2 for x in range(len(MODES))], values, width=0.2, label=name)
    rates.set_xticks([x + 0.3 for x in range(len(MODES))], list(MODES))
    rates.set_ylabel("transfers settled per second")
    rates.set_title("throughput")
    rates.legend()
    # Labels on three short lines: on one or two they run into their neighbours at this width.
    series = {
        "baseline\ntxn": [results["baseline"][m]["latency_ms"] for m in MODES],
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
    (output_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = render(results)
    plotted = plot(results, output_dir / "results.png")
    text += f"\n\nwrote {output_dir / 'results.json'}" + (
        f" and {output_dir / 'results.png'}" if plotted else " (no plot: install the `bench` extra for matplotlib)"
    )
    return text
