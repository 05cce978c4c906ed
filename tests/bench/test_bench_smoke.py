"""`make bench` at toy sizes: it runs from start to end and writes its table and results.json.

How fast anything is, is not checked here: a test suite on a shared machine cannot say.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from settings import PROJECT_ROOT

TINY = {
    "BENCH_WALLETS": "50",
    "BENCH_ENGINE_INTENTS": "300",
    "BENCH_BASELINE_SECONDS": "0.5",
    "BENCH_BASELINE_CLIENTS": "1,2",
    "BENCH_E2E_SECONDS": "1",
    "BENCH_E2E_CLIENTS": "4",
    "BENCH_BULK_SECONDS": "1",
    "BENCH_BULK_CLIENTS": "1",
    "BENCH_BULK_SIZE": "50",
    "BENCH_SETTLE_TIMEOUT_SECONDS": "60",
}
BENCH_SECONDS_MAX = 240


def test_bench_runs_and_reports(tmp_path: Path) -> None:
    # The bench makes its own database and Redis database on the servers this run uses.
    env = {**os.environ, **TINY, "BENCH_OUTPUT_DIR": str(tmp_path)}
    finished = subprocess.run(
        [sys.executable, "-m", "bench.run"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BENCH_SECONDS_MAX,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    for figure in ("baseline", "engine / baseline", "e2e single transfers: settled", "bulk intake: accepted", "goals"):
        assert figure in finished.stdout

    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) >= {"machine", "baseline", "engine", "e2e", "bulk", "rss", "ratios"}
    for mode in ("uniform", "hot"):
        assert results["engine"][mode]["intents"] > 0
        assert results["engine"][mode]["pending"] == 0
        assert results["e2e"][mode]["max"]["database"]["intents"] > 0
        assert results["bulk"][mode]["database"]["pending"] == 0
    assert results["rss"]["worker_peak_mib"] > 0 and results["rss"]["web_peak_mib"] > 0
