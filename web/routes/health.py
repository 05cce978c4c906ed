"""Liveness of the two things the API depends on (the database and the broker), and of the workers.

503 only when the database or the broker is down: the API cannot accept intents then. With no worker
answering, intents are still accepted and wait, PENDING, until one is back: 200, status "degraded",
and the `worker` section says since when no worker was heard from.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify
from kombu import Connection
from sqlalchemy import text

from models.db import get_engine
from settings import get_settings
from web.tokens import redis_client
from workers import heartbeat

blp = Blueprint("health", __name__)


def _check_database() -> str:
    with get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))
    return "ok"


BROKER_CHECK_SECONDS_MAX = 2


def _check_broker() -> str:
    settings = get_settings()
    if settings.broker_url == settings.redis_url:
        redis_client().ping()
    else:  # RabbitMQ (BROKER_URL): a connection that opens and answers
        with Connection(settings.broker_url, connect_timeout=BROKER_CHECK_SECONDS_MAX) as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_CHECK_SECONDS_MAX)
    return "ok"


@blp.route("/health")
@blp.route("/api/v1/health")
def health() -> Any:
    """200 when the database and the broker answer, 503 naming the one that does not."""
    checks: dict[str, str] = {}
    for name, check in (("database", _check_database), ("broker", _check_broker)):
        try:
            checks[name] = check()
        except Exception as error:  # any failure to answer is "down", whatever its type
            checks[name] = f"down: {type(error).__name__}"
    up = all(value == "ok" for value in checks.values())
    worker = _worker_state()
    status = "ok" if up and worker["status"] == "ok" else "degraded"
    return jsonify({"status": status, "checks": checks, "worker": worker}), 200 if up else 503


def _worker_state() -> dict[str, Any]:
    try:
        return heartbeat.read(redis_client(), time.time()).as_dict()
    except Exception as error:  # Redis down: the broker check already answers 503
        return {"status": f"unknown: {type(error).__name__}", "answering": None, "last_seen_seconds_ago": None}
