"""`/metrics` for Prometheus, and the per-request measurements behind it.

Under `python -m web.serve` (PROMETHEUS_MULTIPROC_DIR set) the answer aggregates every web and worker process's
samples; the system gauges (queue depth, outbox lag, parked intents, last reconciliation) are read at scrape time
from the broker and Postgres, so they are right whichever process answers and after any restart.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import redis
from flask import Blueprint, Flask, Response, g, request
from kombu import Connection
from kombu.exceptions import ChannelError
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import text

from models.db import get_engine
from ops.metrics import HTTP_LATENCY, HTTP_REQUESTS, multiprocess_enabled
from settings import get_settings, is_amqp
from web.tokens import redis_client
from workers import heartbeat

logger = logging.getLogger(__name__)

blp = Blueprint("metrics", __name__)

# Scrape-time reads must answer fast even when something is wrong.
SCRAPE_STATEMENT_TIMEOUT_MS = 2000
UNMATCHED_ROUTE = "<unmatched>"
# Methods keep their name as a label; any other (a client may send any token) counts as one, so
# nobody can add series to this public endpoint by inventing methods.
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
OTHER_METHOD = "other"

_OUTBOX_LAG = text(
    """
    SELECT COUNT(*), COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - MIN(created_at)), 0)
      FROM outbox_events WHERE published_at IS NULL
    """
)
# Through the small partial index ix_transactions_parked (migration 0011).
_PARKED = text("SELECT COUNT(*) FROM transactions WHERE parked_at IS NOT NULL AND status = 'PENDING'")
# Through the partial index ix_webhook_deliveries_endpoint_due, and the (small) endpoints table.
_WEBHOOKS = text(
    """
    SELECT (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'PENDING'),
           (SELECT COUNT(*) FROM webhook_endpoints WHERE status = 'ENABLED' AND failing_since IS NOT NULL),
           (SELECT COUNT(*) FROM webhook_endpoints WHERE status = 'DISABLED')
    """
)
# Both through ix_transactions_pending ((created_at, id), partial on PENDING): a count over the index, and its
# first entry that is not parked. Parked intents wait for an operator and have their own gauge; left in,
# one of them would hold the oldest-PENDING age up for as long as it is parked.
_PENDING = text(
    """
    SELECT (SELECT COUNT(*) FROM transactions WHERE status = 'PENDING'),
           (SELECT EXTRACT(EPOCH FROM clock_timestamp() - created_at) FROM transactions
             WHERE status = 'PENDING' AND parked_at IS NULL ORDER BY created_at LIMIT 1)
    """
)
_LAST_RUN = text(
    """
    SELECT mode, status, findings_count, EXTRACT(EPOCH FROM finished_at) AS finished
      FROM reconciliation_runs WHERE organization_id IS NULL
     ORDER BY started_at DESC LIMIT 1
    """
)


def _amqp_queue_depths(broker_url: str, names: list[str]) -> dict[str, int]:
    """Ready messages per queue on RabbitMQ (a passive declare: it creates nothing). A queue no
    worker has declared yet (no webhooks worker runs, say) is left out: the broker answers its
    passive declare by closing the channel, so the next queue gets a new one."""
    depths = {}
    with Connection(broker_url, connect_timeout=1) as connection:
        for name in names:
            channel = connection.channel()
            try:
                depths[name] = channel.queue_declare(queue=name, passive=True).message_count
            except ChannelError:
                continue
            finally:
                with contextlib.suppress(ChannelError, OSError):
                    channel.close()
    return depths


class SystemCollector(Collector):
    """Gauges read from Postgres and Redis when Prometheus scrapes."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._queue_depth()
        yield from self._workers()
        yield from self._database_gauges()

    @staticmethod
    def _workers() -> Iterator[GaugeMetricFamily]:
        """The settlement workers' heartbeats, as /health reads them."""
        try:
            state = heartbeat.read(redis_client(), time.time())
        except Exception:  # a scrape must answer even when Redis does not
            logger.warning("worker heartbeats unavailable", exc_info=True)
            return
        yield GaugeMetricFamily(
            "vaultcraft_settlement_workers_up",
            f"Settlement workers that sent a heartbeat in the last {heartbeat.SILENT_SECONDS_MAX:g} s",
            value=state.alive,
        )
        last_seen = GaugeMetricFamily(
            "vaultcraft_settlement_worker_last_seen_seconds",
            "Seconds since any settlement worker last sent a heartbeat (absent: none ever did)",
        )
        if state.last_seen_seconds_ago is not None:
            last_seen.add_metric([], max(state.last_seen_seconds_ago, 0.0))
        yield last_seen

    def _queue_depth(self) -> Iterator[GaugeMetricFamily]:
        from workers.app import app as celery_app

        family = GaugeMetricFamily("vaultcraft_queue_depth", "Messages waiting in a Celery queue", labels=["queue"])
        settings = get_settings()
        queues = celery_app.conf.task_queues or ()
        try:
            if is_amqp(settings.broker_url):
                depths = _amqp_queue_depths(settings.broker_url, [queue.name for queue in queues])
            else:
                client = redis.Redis.from_url(settings.redis_url, socket_timeout=1, socket_connect_timeout=1)
                depths = {queue.name: client.llen(queue.name) for queue in queues}
        except Exception:  # a scrape must answer even when the broker does not
            logger.warning("queue depth unavailable", exc_info=True)
            return
        for name, depth in depths.items():
            family.add_metric([name], depth)
        yield family

    def _database_gauges(self) -> Iterator[GaugeMetricFamily]:
        try:
            with get_engine().connect() as connection:
                connection.execute(text(f"SET LOCAL statement_timeout = {SCRAPE_STATEMENT_TIMEOUT_MS}"))
                backlog, oldest_seconds = connection.execute(_OUTBOX_LAG).one()
                parked = connection.execute(_PARKED).scalar_one()
                pending, oldest_pending_seconds = connection.execute(_PENDING).one()
                webhooks_pending, endpoints_failing, endpoints_disabled = connection.execute(_WEBHOOKS).one()
                last_run = connection.execute(_LAST_RUN).one_or_none()
        except Exception:  # a scrape must answer even when Postgres does not
            logger.warning("database gauges unavailable", exc_info=True)
            return
        yield GaugeMetricFamily("vaultcraft_outbox_backlog_events", "Events not yet published", value=backlog)
        yield GaugeMetricFamily(
            "vaultcraft_outbox_lag_seconds", "Age of the oldest unpublished event", value=float(oldest_seconds)
        )
        yield GaugeMetricFamily(
            "vaultcraft_parked_intents", "Intents parked PENDING because settling them kept failing", value=parked
        )
        yield GaugeMetricFamily(
            "vaultcraft_pending_intents",
            "Intents accepted and not yet settled (PENDING, parked ones too)",
            value=pending,
        )
        yield GaugeMetricFamily(
            "vaultcraft_oldest_pending_intent_seconds",
            "Age of the oldest PENDING intent that is not parked (0 when there is none)",
            value=float(oldest_pending_seconds or 0),
        )
        yield GaugeMetricFamily(
            "vaultcraft_webhook_deliveries_pending", "Webhook deliveries waiting for an attempt", value=webhooks_pending
        )
        yield GaugeMetricFamily(
            "vaultcraft_webhook_endpoints_failing",
            "ENABLED webhook endpoints whose attempts have failed since their last success",
            value=endpoints_failing,
        )
        yield GaugeMetricFamily(
            "vaultcraft_webhook_endpoints_disabled", "DISABLED webhook endpoints", value=endpoints_disabled
        )
        yield from self._last_run(last_run)

    @staticmethod
    def _last_run(row: Any) -> Iterator[GaugeMetricFamily]:
        clean = GaugeMetricFamily(
            "vaultcraft_reconciliation_last_clean",
            "1 when the last platform-wide reconciliation run found no drift, 0 when it did",
            labels=["mode"],
        )
        drift = GaugeMetricFamily(
            "vaultcraft_reconciliation_last_drift_findings", "Findings of the last platform-wide run", labels=["mode"]
        )
        finished = GaugeMetricFamily(
            "vaultcraft_reconciliation_last_run_timestamp_seconds", "When the last platform-wide run finished"
        )
        if row is not None:
            clean.add_metric([row.mode], 1.0 if row.status == "CLEAN" else 0.0)
            drift.add_metric([row.mode], float(row.findings_count))
            finished.add_metric([], float(row.finished or 0))
        yield from (clean, drift, finished)


_system_registry = CollectorRegistry(auto_describe=False)
_system_registry.register(SystemCollector())


def _process_samples() -> bytes:
    if not multiprocess_enabled():
        return generate_latest(REGISTRY)
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


@blp.route("/metrics")
def metrics() -> Response:
    """Prometheus text format: every process's samples and the system gauges."""
    return Response(_process_samples() + generate_latest(_system_registry), mimetype=CONTENT_TYPE_LATEST)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    if started is not None:
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
        method = request.method if request.method in STANDARD_METHODS else OTHER_METHOD
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)
    return response


def install(app: Flask) -> None:
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.register_blueprint(blp)
