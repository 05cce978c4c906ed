"""The operators' page: every organisation's activity and backlog, the queues, the workers, parked
intents, the outbox, failing webhook endpoints and the last reconciliation runs, with links into Flower.

The system gauges are the ones /metrics exports (web.metrics.SystemCollector), read the same way, so
the page and Prometheus never disagree. Workers answer Celery's inspect API (as Flower asks them),
which waits out its timeout for replies: that list is its own fragment, fetched by the page's script,
so the page itself answers at once.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import request

from ledger import analytics, insight
from ledger.errors import Forbidden
from settings import get_settings
from web.console import charts
from web.console.blueprint import arg, bp, reading, render
from web.metrics import SystemCollector
from web.tokens import redis_client
from workers import heartbeat

logger = logging.getLogger(__name__)
INSPECT_TIMEOUT_SECONDS = 0.5
ACTIVITY_WINDOW = timedelta(hours=24)


def _require_operator() -> None:
    from flask import g

    if not g.console_actor.is_operator:
        raise Forbidden("only a platform operator opens the platform page", code="OPERATOR_REQUIRED")


def flower_url() -> str:
    configured = get_settings().flower_url
    if configured:
        return configured.rstrip("/")
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    return f"{request.scheme}://{host}:{get_settings().flower_port}"


def system_gauges() -> dict[str, list[tuple[dict[str, str], float]]]:
    """What /metrics would say now: gauge name → [(labels, value)]."""
    gauges: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in SystemCollector().collect():
        for sample in family.samples:
            gauges.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return gauges


def _organizations(session: Any) -> list[dict[str, Any]]:
    until = datetime.now(UTC)
    activity: dict[Any, list[analytics.OrganizationActivity]] = {}
    for row in analytics.activity_by_organization(session, since=until - ACTIVITY_WINDOW, until=until):
        activity.setdefault(row.organization_id, []).append(row)
    return [
        {
            "id": org.organization_id,
            "name": org.name,
            "pending": org.pending,
            "oldest_pending_at": org.oldest_pending_at,
            "activity": activity.get(org.organization_id, []),
        }
        for org in insight.organizations_backlog(session)
    ]


@bp.route("/platform", methods=["GET"])
def platform() -> str:
    _require_operator()
    with reading() as (session, _actor):
        organizations = _organizations(session)
        parked = insight.parked_intents(session)
        failing = insight.failing_endpoints(session)
        runs = insight.last_runs(session)
        activity = charts.activity(session, None, arg("range"))
    oldest = min((o["oldest_pending_at"] for o in organizations if o["oldest_pending_at"]), default=None)
    try:
        workers_seen = heartbeat.read(redis_client(), time.time()).as_dict()
    except Exception:  # Redis down: the page still answers, and says so
        workers_seen = {"status": "unknown", "answering": None, "last_seen_seconds_ago": None}
    return render(
        "console/platform.html",
        organizations=organizations,
        oldest_pending_at=oldest,
        oldest_pending_seconds=(datetime.now(UTC) - oldest).total_seconds() if oldest else None,
        parked=parked,
        failing=failing,
        runs=runs,
        gauges=system_gauges(),
        heartbeat=workers_seen,
        activity=activity,
        ranges=list(charts.RANGES),
        flower=flower_url(),
    )


@bp.route("/platform/workers", methods=["GET"])
def platform_workers() -> str:
    """The workers answering Celery's inspect API within INSPECT_TIMEOUT_SECONDS, as a fragment."""
    _require_operator()
    from workers.app import app as celery_app

    try:
        stats = celery_app.control.inspect(timeout=INSPECT_TIMEOUT_SECONDS).stats() or {}
    except Exception:  # the broker did not answer: say so in the fragment
        logger.warning("celery inspect failed", exc_info=True)
        stats = {}
    workers = [
        {
            "name": name,
            "pool": (info.get("pool") or {}).get("max-concurrency"),
            "processed": sum((info.get("total") or {}).values()),
            "uptime": info.get("uptime"),
        }
        for name, info in sorted(stats.items())
    ]
    return render("console/platform_workers.html", workers=workers, flower=flower_url())
