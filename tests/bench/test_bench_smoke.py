"""`make bench` at toy sizes: it runs from start to end and writes its table and results.json.

How fast anything is, is not checked here: a test suite on a shared machine cannot say.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from settings import PROJECT_ROOT

TINY = {
    "BENCH_WALLETS": "50",
    "BENCH_ENGINE_INTENTS": "300",
    "BENCH_HOLD_INTENTS": "200",
    "BENCH_EXPIRY_HOLDS": "200",
    "BENCH_EXPIRY_LEAD_SECONDS": "3",
    "BENCH_BASELINE_SECONDS": "0.5",
    "BENCH_BASELINE_CLIENTS": "1,2",
    "BENCH_PGBENCH_CLIENTS_UNIFORM": "2",
    "BENCH_PGBENCH_CLIENTS_HOT": "2",
    "BENCH_E2E_SECONDS": "1",
    "BENCH_E2E_CLIENTS": "4",
    "BENCH_BULK_SECONDS": "1",
    "BENCH_BULK_CLIENTS": "1",
    "BENCH_BULK_SIZE": "50",
    "BENCH_SETTLE_TIMEOUT_SECONDS": "60",
    "BENCH_CONSOLE_ORGANIZATIONS": "3",
    "BENCH_CONSOLE_TRANSACTIONS": "600",
    "BENCH_CONSOLE_REQUESTS": "2",
    "BENCH_WEBHOOK_INTENTS": "100",
    "BENCH_WEBHOOK_ENDPOINTS": "2",
    "BENCH_WEBHOOK_SECONDS": "1",
    # The scaling table has its own smoke test below: here it would only run a second time.
    "BENCH_SCALING": "0",
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
    for figure in (
        "baseline: pgbench",
        "baseline: Python client processes",
        "engine / pgbench baseline",
        "limit: set-based SQL",
        "limit / pgbench baseline",
        "engine (to last event published) / limit",
        "of the set-based limit uniform",
        "e2e settled / pgbench baseline",
        "bulk settled / pgbench baseline",
        "e2e single transfers: settled",
        "bulk intake: accepted",
        "goals",
        "x pgbench baseline uniform",
        "holds / transfer engine",
        "captures / transfer engine",
        "of the transfer engine hot",
        "holds due at the same second done within 10 s",
        "every console page <= 300 ms p95",
        "console pages (p50 / p95 ms):",
        "webhooks: deliveries/s to 2 endpoints answering at once",
        "webhooks p99 <= 500 ms accepted->received at half load",
        "one endpoint always timing out lowers the others' rate",
    ):
        assert figure in finished.stdout

    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) >= {"machine", "baseline", "engine", "e2e", "bulk", "rss", "ratios", "goals"}
    for mode in ("uniform", "hot"):
        pgbench = results["baseline"]["pgbench"][mode]
        assert pgbench["tool"] == "pgbench" and pgbench["transactions"] > 0
        assert results["baseline"]["python_clients"][mode]["transfers"] > 0
        for figure in ("engine", "e2e", "bulk"):
            assert results["ratios"][f"{figure}_{mode}"] > 0
        assert results["ratios"]["engine_" + mode] == (
            results["engine"][mode]["settled_per_second"] / pgbench["per_second"]
        )
        assert results["engine"][mode]["intents"] > 0
        # The probe settled every intent it was given, as the engine does.
        probe = results["limit"][mode]
        assert probe["intents"] > 250 and probe["completed"] == probe["intents"] and probe["pending"] == 0
        assert results["limit_ratios"][f"engine_{mode}"] == (
            results["engine"][mode]["per_second_to_published"] / probe["settled_per_second"]
        )
        assert results["engine"][mode]["pending"] == 0
        assert results["e2e"][mode]["max"]["database"]["intents"] > 0
        assert results["bulk"][mode]["database"]["pending"] == 0
    for mode in ("uniform", "hot"):
        holds = results["holds"][mode]
        assert holds["hold"]["intents"] > 0 and holds["hold"]["pending"] == 0
        assert holds["hold"]["completed"] == holds["hold"]["intents"]  # every HOLD intent settled: HELD
        assert holds["capture"]["intents"] == holds["hold"]["intents"]  # one capture per hold
        assert holds["capture"]["completed"] == holds["capture"]["intents"]
        # Half captured whole, the other half captured in part and then voided: none left open.
        assert set(holds["capture"]["hold_statuses"]) == {"CAPTURED", "VOIDED"}
        assert holds["void"]["voided"] == holds["capture"]["hold_statuses"]["VOIDED"]
        for figure in ("hold", "capture"):
            assert results["hold_ratios"][f"{figure}_{mode}"] == (
                holds[figure]["settled_per_second"] / results["engine"][mode]["settled_per_second"]
            )
    expiry = results["holds"]["expiry"]
    assert (expiry["holds"], expiry["expired"], expiry["still_held"]) == (expiry["holds"], expiry["holds"], 0)
    assert expiry["holds"] > 150  # a few of the 200 may pick the same wallet twice and be left out
    hold_goals = [goal for goal in results["goals"] if "transfer engine" in goal["goal"] or "expiry" in goal["goal"]]
    assert len(hold_goals) == 5 and all(isinstance(goal["met"], bool) for goal in hold_goals)
    console = results["console"]
    assert set(console["pages"]) == {"/console/platform", *(p for p in _console_pages())}
    assert all(page["statuses"] == [200] for page in console["pages"].values()), console["pages"]
    # Plans are read at toy size too (sequential scans are right there: they are reported, not judged).
    assert len(console["queries"]) >= 10 and all(q["scans"] and q["ms"] >= 0 for q in console["queries"])
    assert console["goal"]["goal"] == "every console page <= 300 ms p95"
    assert results["rss"]["worker_peak_mib"] > 0 and results["rss"]["web_peak_mib"] > 0
    # Every event of each webhook phase reached each of its endpoints, its signature verified.
    hooks = results["webhooks"]
    for phase in ("throughput", "one_dead"):
        assert hooks[phase]["all_delivered"] and hooks[phase]["deliveries"] == hooks[phase]["deliveries_expected"] > 0
    assert hooks["half"]["deliveries"] == hooks["half"]["deliveries_expected"] > 0
    assert hooks["half"]["latency_ms"]["p50"] > 0
    webhook_goals = [goal for goal in results["goals"] if "webhook" in goal["goal"] or "endpoint" in goal["goal"]]
    assert len(webhook_goals) == 4
    # One-second bulk phases cannot show the bulk goal met, however fast they are.
    bulk_goal = next(goal for goal in results["goals"] if goal["goal"].startswith("bulk"))
    assert bulk_goal["met"] is False and "not the goal's measure" in bulk_goal["measured"]


SCALING_TINY = {
    "BENCH_WALLETS": "50",
    # Each count starts processes of its own: one of each is the whole path, more add seconds, not coverage.
    "BENCH_SCALING_WORKERS": "2",
    "BENCH_SCALING_INTENTS": "300",
    "BENCH_SCALING_WEB": "2",
    "BENCH_SCALING_E2E_SECONDS": "1",
    "BENCH_E2E_CLIENTS": "4",
    "BENCH_SCALING_BACKLOGS": "600,200",  # given out of order: the curve runs smallest first
    "BENCH_SETTLE_TIMEOUT_SECONDS": "60",
}


def test_scaling_table_runs_and_reports(tmp_path: Path) -> None:
    """`python -m bench.scaling` at toy sizes, through `make bench`'s hook: a row per worker count, per
    web count and per backlog size, each with every intent settled and a rate, and the flatness verdict."""
    from bench import report, scaling

    results = scaling.run_alone(tmp_path, {**os.environ, **SCALING_TINY})

    assert json.loads((tmp_path / "scaling.json").read_text()) == results
    assert [w["processes"] for w in results["workers"]] == [2]
    assert [w["processes"] for w in results["web"]] == [2]
    assert [b["backlog"] for b in results["backlog"]] == [200, 600]
    for drained in (*results["workers"], *results["backlog"]):
        assert drained["finished"] and drained["pending"] == 0
        assert drained["completed"] == drained["intents"] > 0
        assert drained["settled_per_second"] > 0 and drained["per_second_to_published"] > 0
        # The slices of the drain's time hold every intent once.
        parts = drained["parts_per_second"]
        assert len(parts) == scaling.PARTS and (parts[0], parts[-1]) == (
            drained["first_part_per_second"],
            drained["last_part_per_second"],
        )
        assert sum(parts) * drained["span_seconds"] / scaling.PARTS == pytest.approx(drained["intents"])
        assert drained["cpu_ms_per_intent"]["worker"] > 0
        assert drained["worker_process_max_mib"] > 0
        assert drained["worker_tree_max_mib"] >= drained["worker_tree_before_mib"] > 0
    assert all(w["worker_peak_process_mib"] > 0 for w in results["workers"])
    for served in results["web"]:
        assert served["finished"] and served["database"]["pending"] == 0
        assert served["database"]["intents"] > 0 and served["database"]["settled_per_second"] > 0
        assert served["http"]["accepted_per_second"] > 0 and served["clients"] == 4
    flat = results["flat"]
    assert (flat["smallest"], flat["largest"]) == (200, 600)
    assert flat["ratio"] == results["backlog"][1]["settled_per_second"] / results["backlog"][0]["settled_per_second"]
    assert flat["flat"] == (flat["ratio"] >= 1 - scaling.FLAT_TOLERANCE)

    table = "\n".join(scaling.render(results))
    lines = table.splitlines()
    for title in ("by worker processes", "by web processes", "by backlog size"):
        assert sum(title in line for line in lines) == 1, table
    # One row per configuration, first cell its process count or backlog size.
    first_cells = [line.split()[0] for line in lines if line.startswith("    ") and line.split()[0][0].isdigit()]
    assert first_cells == ["2", "2", "200", "600"], table
    assert "backlog curve: flat" in table or "backlog curve: NOT flat" in table
    # As a goal of `make bench`, reported and never fatal.
    [(goal, measured, met)] = scaling.goals(results)
    assert goal == "engine rate at a 600-intent backlog within 20% of its rate at 200"
    assert measured == f"{flat['ratio']:.0%}" and met is flat["flat"]
    assert report._scaling_goals({"scaling": results}) == scaling.goals(results)


def _console_pages() -> tuple[str, ...]:
    from bench.console import ORGANIZATION_PAGES

    return ORGANIZATION_PAGES


PGBENCH_SECONDS = 1


@pytest.mark.parametrize("hot", [False, True], ids=["uniform", "hot"])
def test_pgbench_baseline_reports_what_it_wrote(hot: bool) -> None:
    """The pgbench baseline at toy size: what it says it committed is what the database holds."""
    from bench import dataset, pgbench

    dsn = os.environ["DATABASE_URL"]
    data = dataset.create(dsn, 20)
    tag = f"bench-pgbench-test-{uuid.uuid4().hex[:8]}"
    pgbench.prepare_wallets(dsn, data.wallets, data.hot_wallet)
    try:
        job = pgbench.Job(dsn, data.organization_id, data.user_id, len(data.wallets), hot, PGBENCH_SECONDS, 2, tag)
        result = pgbench.run(job)
    finally:
        pgbench.drop_wallets(dsn)

    with psycopg.connect(dsn) as connection:
        statuses: dict[str, int] = dict(
            connection.execute(
                "SELECT status, count(*) FROM transactions WHERE description = %s GROUP BY status", (tag,)
            ).fetchall()
        )
        entries = connection.execute(
            "SELECT direction, count(*), count(DISTINCT e.transaction_id),"
            "       bool_and(e.wallet_id IN (t.source_wallet_id, t.destination_wallet_id))"
            "  FROM ledger_entries e JOIN transactions t ON t.id = e.transaction_id"
            " WHERE t.description = %s GROUP BY direction",
            (tag,),
        ).fetchall()
        destinations = connection.execute(
            "SELECT count(DISTINCT destination_wallet_id), bool_or(source_wallet_id = destination_wallet_id)"
            "  FROM transactions WHERE description = %s",
            (tag,),
        ).fetchone()
    assert result["transactions"] > 0
    assert statuses == {"COMPLETED": result["transactions"]}
    assert sorted(entries) == [
        ("CREDIT", result["transactions"], result["transactions"], True),
        ("DEBIT", result["transactions"], result["transactions"], True),
    ]
    assert destinations is not None and destinations[1] is False
    assert (destinations[0] == 1) is hot  # hot: every transfer into the one hot wallet
    assert result["failed"] == 0
    # The rate is pgbench's own line, parsed; the latencies are one per committed transaction.
    assert f"tps = {result['per_second']:f} " in result["output"]
    assert result["latency_samples"] == result["transactions"]
    assert result["latency_ms"]["p50"] > 0
