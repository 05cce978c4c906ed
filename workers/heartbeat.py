"""Workers say they are alive; /health reads when one last did.

Each worker's main process writes its hostname and the time into one Redis sorted set every
INTERVAL_SECONDS, from the worker's own timer (a bootstep), so a worker that is down, crash-looping
or stuck in start-up stops writing. Reading the newest entry is one cheap Redis call for /health,
with no broadcast to the workers and no waiting for their replies.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from celery import bootsteps

from celeryconfig import SETTLEMENT_QUEUE
from settings import get_settings

HEARTBEAT_KEY = "vaultcraft:worker-heartbeats"
INTERVAL_SECONDS = 2.0
# No heartbeat for this long: the worker counts as down (a few missed beats, not one slow one).
SILENT_SECONDS_MAX = 3 * INTERVAL_SECONDS
# Entries of workers gone for a day are dropped (hostnames change with every container).
FORGET_SECONDS = 86_400.0

logger = logging.getLogger(__name__)


def _client() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url, socket_timeout=2, socket_connect_timeout=2)


def record(client: redis.Redis, hostname: str, now: float) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.zadd(HEARTBEAT_KEY, {hostname: now})
    pipe.zremrangebyscore(HEARTBEAT_KEY, "-inf", now - FORGET_SECONDS)
    pipe.execute()


@dataclass(frozen=True)
class WorkerState:
    alive: int  # workers heard from within SILENT_SECONDS_MAX
    last_seen_seconds_ago: float | None  # None: never heard from

    def as_dict(self) -> dict[str, Any]:
        last = self.last_seen_seconds_ago
        return {
            "status": "ok" if self.alive else "down",
            "answering": self.alive,
            "last_seen_seconds_ago": None if last is None else round(last, 1),
        }


def read(client: redis.Redis, now: float) -> WorkerState:
    pipe = client.pipeline(transaction=False)
    pipe.zrevrange(HEARTBEAT_KEY, 0, 0, withscores=True)
    pipe.zcount(HEARTBEAT_KEY, now - SILENT_SECONDS_MAX, "+inf")
    newest, alive = pipe.execute()
    last = now - float(newest[0][1]) if newest else None
    return WorkerState(alive=int(alive), last_seen_seconds_ago=last)


def _settles(worker: Any) -> bool:
    """Whether this worker consumes the settlement queue (every worker does unless `--queues` says
    otherwise)."""
    consuming = getattr(worker.app.amqp.queues, "consume_from", None)
    return not consuming or SETTLEMENT_QUEUE in consuming


class Heartbeat(bootsteps.StartStopStep):
    """Runs on the worker's timer in its main process; a failed write is retried at the next beat."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer_ref: Any = None
        self.client: redis.Redis | None = None

    def start(self, parent: Any) -> None:
        if not _settles(parent):
            return  # /health speaks of settlement: a webhooks-only worker alive says nothing about it
        self.client = _client()
        self.beat(parent.hostname)
        self.timer_ref = parent.timer.call_repeatedly(INTERVAL_SECONDS, self.beat, (parent.hostname,), priority=10)

    def stop(self, parent: Any) -> None:
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None

    def beat(self, hostname: str) -> None:
        try:
            assert self.client is not None
            record(self.client, hostname, time.time())
        except redis.RedisError as error:
            logger.warning("worker heartbeat not written", extra={"error": type(error).__name__})
