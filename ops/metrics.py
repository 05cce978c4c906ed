"""Prometheus metrics shared by the web and worker processes.

Multi-process safe: when PROMETHEUS_MULTIPROC_DIR is set (by `make run` / the Procfile), every
web worker process and every Celery pool process writes its samples to files there, and the web
app's `/metrics` aggregates them all. Without it (tests, a single process) the default registry
is used. Gauges that describe the system rather than a process (queue depth, outbox lag, the last
reconciliation) are read from Postgres and Redis at scrape time, in web/metrics.py.

Counts that depend on a database transaction (intents accepted, transactions settled, runs) are
observed only after it commits, from the notes the domain code leaves in `session.info`.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter as Counter_
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram
from sqlalchemy import event
from sqlalchemy.orm import Session

from ledger.clearing.netting import SETTLEMENT_SKIPS_NOTE
from ledger.integrity.events import SETTLED_KEY
from ledger.integrity.reconciliation import RUN_RECONCILIATION_NOTE
from ledger.notes import ACCEPTED_KEY
from ledger.settlement.hold_outcomes import HOLD_EXPIRY_LAG_KEY, HOLD_OUTCOMES_KEY
from notify.deliveries import OUTCOMES_NOTE

logger = logging.getLogger("vaultcraft.settlement")

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "vaultcraft_http_requests_total", "HTTP requests answered, by route and status", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "vaultcraft_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
INTENTS_ACCEPTED = Counter("vaultcraft_intents_accepted_total", "Intents accepted (202) by the API", ["type"])
TRANSACTIONS_SETTLED = Counter(
    "vaultcraft_transactions_settled_total", "Transactions that reached a final status", ["type", "status"]
)
# Money, not counts: what COMPLETED transactions moved, in minor units of their currency (a handful
# of ISO 4217 codes, so the label stays small). Per minute by currency is the dashboard's headline.
SETTLED_AMOUNT = Counter(
    "vaultcraft_settled_amount_minor_units_total",
    "Amount moved by transactions that COMPLETED, in minor units of their currency",
    ["type", "currency"],
)
SETTLE_LATENCY = Histogram(
    "vaultcraft_transaction_accepted_to_final_seconds",
    "From an intent's acceptance (created_at) to its final status (completed_at)",
    ["status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RECONCILIATION_RUNS = Counter("vaultcraft_reconciliation_runs_total", "Reconciliation runs", ["mode", "status"])
RECONCILIATION_DRIFT = Counter(
    "vaultcraft_reconciliation_drift_findings_total", "Drift findings reported by reconciliation runs", ["mode"]
)
SETTLEMENT_SKIPS = Counter(
    "vaultcraft_settlement_organizations_skipped_total",
    "Organisations a settlement batch left out (treasury or clearing wallet not ACTIVE); their obligations wait",
    ["currency", "reason"],
)
EVENTS_PUBLISHED = Counter("vaultcraft_outbox_events_published_total", "Outbox events published to the broker")
EVENTS_PUBLISH_FAILURES = Counter("vaultcraft_outbox_publish_failures_total", "Outbox publish attempts that failed")
ACCESS_DENIALS = Counter(
    "vaultcraft_access_denials_total",
    "403s and 404s for objects that exist but are not the caller's; recorded=false: over the caller's"
    " per-minute allowance of audit rows, counted only",
    ["status", "recorded"],
)
INTENTS_PARKED = Counter(
    "vaultcraft_intents_parked_total", "Intents parked after their settling kept failing (ledger/settlement/parking.py)"
)

# By outcome only: an endpoint id label would add series with every endpoint anyone creates. Which
# endpoints fail is a gauge read from Postgres (web/metrics.py) and each endpoint's delivery list.
WEBHOOK_ATTEMPTS = Counter(
    "vaultcraft_webhook_attempts_total",
    "Webhook delivery attempts by outcome: succeeded, retrying (failed, retry scheduled), failed (given up)",
    ["outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "vaultcraft_webhook_event_to_delivered_seconds",
    "From an event's creation to the 2xx answer that delivered it",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400),
)
HOLDS = Counter(
    "vaultcraft_holds_total",
    "Holds by outcome: held, failed, captured (per capture posted), voided, expired",
    ["outcome"],
)
HOLD_EXPIRY_LAG = Histogram(
    "vaultcraft_hold_expiry_lag_seconds",
    "How long after its expires_at a hold actually expired",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_DIR_ENV))


def _observe(info: dict[str, Any]) -> None:
    for transaction_type, count in info.pop(ACCEPTED_KEY, {}).items():
        INTENTS_ACCEPTED.labels(transaction_type).inc(count)
    settled = info.pop(SETTLED_KEY, ())
    if settled:
        _observe_settled(settled)
    for currency, reason in info.pop(SETTLEMENT_SKIPS_NOTE, ()):
        SETTLEMENT_SKIPS.labels(currency, reason).inc()
    for outcome, latency_seconds in info.pop(OUTCOMES_NOTE, ()):
        WEBHOOK_ATTEMPTS.labels(outcome).inc()
        if latency_seconds is not None:
            WEBHOOK_LATENCY.observe(max(latency_seconds, 0.0))
    for outcome, count in info.pop(HOLD_OUTCOMES_KEY, {}).items():
        HOLDS.labels(outcome).inc(count)
    for lag_seconds in info.pop(HOLD_EXPIRY_LAG_KEY, ()):
        HOLD_EXPIRY_LAG.observe(lag_seconds)
    run = info.pop(RUN_RECONCILIATION_NOTE, None)
    if run is not None:
        mode, status, findings = run
        RECONCILIATION_RUNS.labels(mode, status).inc()
        if findings:
            RECONCILIATION_DRIFT.labels(mode).inc(findings)


def _observe_settled(settled: Sequence[tuple[str, str, float, str | None, Any, int, str]]) -> None:
    """Transactions that reached a final status in one commit (a settlement batch: up to 1,000).

    Counters move once per (type, status); the latency histogram takes every observation. Logging
    is one summary line per commit, plus one line per transaction that carries an API request id
    (so that request can be followed into its settlement); the others log at DEBUG only.
    """
    counts: Counter_[tuple[str, str]] = Counter_()
    moved: Counter_[tuple[str, str]] = Counter_()
    latency_max: dict[str, float] = {}
    debug = logger.isEnabledFor(logging.DEBUG)
    histograms: dict[str, Any] = {}
    for status, transaction_type, latency_seconds, request_id, transaction_id, amount, currency in settled:
        counts[(transaction_type, status)] += 1
        if status == "COMPLETED":
            moved[(transaction_type, currency)] += amount
        histogram = histograms.get(status) or histograms.setdefault(status, SETTLE_LATENCY.labels(status))
        histogram.observe(latency_seconds)
        latency_max[status] = max(latency_max.get(status, 0.0), latency_seconds)
        if request_id is not None or debug:
            logger.log(
                logging.INFO if request_id is not None else logging.DEBUG,
                "transaction %s",
                status.lower(),
                extra={
                    "transaction_id": str(transaction_id),
                    "request_id": request_id,
                    "status": status,
                    "latency_ms": round(latency_seconds * 1000, 1),
                },
            )
    for (transaction_type, currency), amount in moved.items():
        SETTLED_AMOUNT.labels(transaction_type, currency).inc(amount)
    by_status: Counter_[str] = Counter_()
    for (transaction_type, status), count in counts.items():
        TRANSACTIONS_SETTLED.labels(transaction_type, status).inc(count)
        by_status[status] += count
    logger.info(
        "transactions final",
        extra={
            "count": len(settled),
            **{status.lower(): count for status, count in sorted(by_status.items())},
            "latency_ms_max": round(max(latency_max.values()) * 1000, 1),
        },
    )


def _after_commit(session: Session) -> None:
    try:
        _observe(session.info)
    except Exception:  # metrics must never fail the work they describe
        logger.warning("could not record metrics", exc_info=True)


def _after_rollback(session: Session) -> None:
    for key in (
        ACCEPTED_KEY,
        SETTLED_KEY,
        RUN_RECONCILIATION_NOTE,
        SETTLEMENT_SKIPS_NOTE,
        HOLD_OUTCOMES_KEY,
        HOLD_EXPIRY_LAG_KEY,
        OUTCOMES_NOTE,
    ):
        session.info.pop(key, None)


def _after_soft_rollback(session: Session, previous_transaction: Any) -> None:
    if not previous_transaction.nested:  # a savepoint's rollback leaves the outer work standing
        _after_rollback(session)


_installed = False


def install_commit_hooks() -> None:
    """Observe committed work in every Session of this process. Idempotent."""
    global _installed
    if _installed:
        return
    event.listen(Session, "after_commit", _after_commit)
    event.listen(Session, "after_soft_rollback", _after_soft_rollback)
    _installed = True


def mark_process_dead(pid: int) -> None:
    """A Celery pool process exited: drop its live-gauge files."""
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def prepare_multiprocess_dir(path: Path) -> Path:
    """An empty directory for this run's metric files (stale files from a past run would be summed)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
