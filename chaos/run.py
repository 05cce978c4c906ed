"""`make chaos`: start a private stack, run every scenario on it, print the summary table, write
chaos/results.json and the table into README.md's "Chaos" section.

    python -m chaos.run [--smoke] [--only NAME ...] [--seed N] [--output PATH] [--no-readme]

Sizes: chaos/scenarios.py `Sizes`; any of them overridden by CHAOS_<FIELD>, e.g. CHAOS_WEBHOOK_TRANSFERS=500.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos.scenarios import SCENARIOS, SMOKE, ScenarioResult, Sizes, sizes_from_env
from chaos.stack import Stack, StackConfig
from settings import PROJECT_ROOT
from web.serve import PROCESSES_DEFAULT, THREADS_DEFAULT

RESULTS_PATH = PROJECT_ROOT / "chaos" / "results.json"
README_PATH = PROJECT_ROOT / "README.md"
README_BEGIN = "<!-- chaos:begin (written by `make chaos`) -->"
README_END = "<!-- chaos:end -->"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "-"


def table_rows(results: list[ScenarioResult]) -> list[list[str]]:
    rows = []
    for result in sorted(results, key=lambda r: r.number):
        passed = sum(check.ok for check in result.checks)
        failed = [check.name for check in result.checks if not check.ok]
        verdict = f"{passed}/{len(result.checks)} hold" + (f" (FAILED: {', '.join(failed)})" if failed else "")
        rows.append(
            [
                f"{result.number}. {result.title}",
                str(result.load["keys"]),
                str(result.intents),
                result.faults,
                _counts(result.outcomes),
                _counts(result.load["answers"]),
                verdict,
                f"{result.seconds:.0f} s",
            ]
        )
    return rows


HEADERS = ["scenario", "transfers sent", "intents accepted", "faults", "outcomes", "HTTP answers", "invariants", "time"]


def markdown_table(results: list[ScenarioResult]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    return "\n".join(lines)


def text_table(results: list[ScenarioResult]) -> str:
    rows = [HEADERS, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def checks_list(results: list[ScenarioResult]) -> str:
    names = list(dict.fromkeys(check.name for result in results for check in result.checks))
    return ", ".join(f"`{name}`" for name in names)


def readme_section(results: list[ScenarioResult], meta: dict[str, Any]) -> str:
    return "\n".join(
        [
            README_BEGIN,
            f"Last full run: {meta['finished_at']}, `make chaos` in {meta['seconds']:.0f} s on "
            f"{meta['cpus']} CPUs ({meta['python']}), seed {meta['seed']}. "
            f"Every scenario: {meta['stack']}.",
            "",
            markdown_table(results),
            "",
            f"Invariants checked after each scenario: {checks_list(results)}.",
            README_END,
        ]
    )


def update_readme(section: str) -> None:
    text = README_PATH.read_text()
    if README_BEGIN in text and README_END in text:
        before, rest = text.split(README_BEGIN, 1)
        after = rest.split(README_END, 1)[1]
        README_PATH.write_text(before + section + after)
    else:
        README_PATH.write_text(text.rstrip("\n") + "\n\n## Chaos\n\n" + section + "\n")


def note_crashes(result: ScenarioResult, crashes: list[dict[str, Any]]) -> None:
    """Processes that died by themselves during the scenario (and were restarted) are a finding too."""
    if not crashes:
        return
    result.fault_detail["crashed_and_restarted"] = crashes
    names = Counter(crash["process"] for crash in crashes)
    result.faults += "; crashed by itself, restarted: " + ", ".join(f"{n} x{c}" for n, c in sorted(names.items()))


def run(sizes: Sizes, names: list[str], seed: int, config: StackConfig) -> tuple[list[ScenarioResult], float]:
    started = time.monotonic()
    results = []
    with Stack(config) as stack:
        print(f"chaos: private stack up in {time.monotonic() - started:.0f} s (web :{stack.web_port})", flush=True)
        for offset, name in enumerate(names):
            print(f"chaos: {name} ...", flush=True)
            crashes_before = len(stack.crashes)
            result = SCENARIOS[name](stack, sizes, seed + offset)
            note_crashes(result, stack.crashes[crashes_before:])
            verdict = "ok" if result.ok else "INVARIANT BROKEN"
            print(f"chaos: {name}: {result.faults}; {verdict} ({result.seconds:.0f} s)", flush=True)
            results.append(result)
    return results, time.monotonic() - started


def web_phrase(config: StackConfig) -> str:
    """How the web ran, and the shipped default (web/serve.py) when this run set another shape."""
    shape, default = f"{config.web_processes}x{config.web_threads}", f"{PROCESSES_DEFAULT}x{THREADS_DEFAULT}"
    if shape == default:
        return f"granian ({shape} threads)"
    return f"granian ({shape} threads, set for this run; the default is {default})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (what the test suite runs)")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite README.md's Chaos section")
    args = parser.parse_args(argv)
    sizes = sizes_from_env(SMOKE if args.smoke else Sizes())
    config = StackConfig()
    names = [name for name in SCENARIOS if not args.only or name in args.only]
    results, seconds = run(sizes, names, args.seed, config)
    meta = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "seed": args.seed,
        "smoke": args.smoke,
        "cpus": os.cpu_count(),
        "python": f"Python {platform.python_version()}",
        "stack": f"web: {web_phrase(config)}, {config.workers} Celery workers "
        f"(prefork x{config.worker_concurrency}), the webhooks worker (threads), beat, Postgres, Redis; loopback only",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"meta": meta, "sizes": asdict(sizes), "scenarios": [r.as_dict() for r in results]}, indent=2) + "\n"
    )
    print()
    print(text_table(results))
    print(f"\nchaos: {len(results)} scenarios in {seconds:.0f} s; results in {args.output.name}")
    if not args.smoke and not args.no_readme and not args.only:
        update_readme(readme_section(results, meta))
    broken = [r.name for r in results if not r.ok]
    if broken:
        print(f"chaos: invariants broken in {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
