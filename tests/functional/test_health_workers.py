"""/health says whether a worker is answering: 200 either way (the API still accepts intents), but
"degraded" with the time since a worker was last heard from when none is."""

from __future__ import annotations

import time
import uuid

import pytest

from workers import heartbeat


def test_a_running_worker_is_reported(app, worker):
    deadline = time.monotonic() + 10
    while True:
        body = app.test_client().get("/health").get_json()
        if body["worker"]["status"] == "ok" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert body["status"] == "ok"
    assert body["worker"]["answering"] >= 1
    assert body["worker"]["last_seen_seconds_ago"] <= heartbeat.SILENT_SECONDS_MAX


@pytest.fixture
def silent_workers(monkeypatch):
    """A heartbeat key no running worker writes to: as if every worker were down."""
    monkeypatch.setattr(heartbeat, "HEARTBEAT_KEY", f"test-heartbeats-{uuid.uuid4()}")
    from web.tokens import redis_client

    yield redis_client()
    redis_client().delete(heartbeat.HEARTBEAT_KEY)


def test_no_worker_ever_seen_is_degraded_not_down(app, silent_workers):
    response = app.test_client().get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["checks"] == {"database": "ok", "broker": "ok"}
    assert body["worker"] == {"status": "down", "answering": 0, "last_seen_seconds_ago": None}


def test_a_worker_silent_for_a_while_is_reported_with_the_time_since(app, silent_workers):
    heartbeat.record(silent_workers, "worker@gone", time.time() - 42)
    response = app.test_client().get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["worker"]["status"] == "down"
    assert 42 <= body["worker"]["last_seen_seconds_ago"] < 50
