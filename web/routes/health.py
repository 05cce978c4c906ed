"""Liveness of the two things the API depends on: the database and the broker."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from sqlalchemy import text

from models.db import get_engine
from web.tokens import redis_client

blp = Blueprint("health", __name__)


def _check_database() -> str:
    with get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))
    return "ok"


def _check_broker() -> str:
    redis_client().ping()
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
    healthy = all(value == "ok" for value in checks.values())
    return jsonify({"status": "ok" if healthy else "degraded", "checks": checks}), 200 if healthy else 503
