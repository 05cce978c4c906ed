"""Debounced wake-ups: ask a worker to run a task soon, publishing at most one message while an
earlier one has not started yet, instead of one message per event that wants it.

    producer:  commit its rows  →  SET key NX PX ttl  →  publish only if the SET won
    task:      DEL key  →  read what is waiting (in a snapshot taken after the DEL)  →  work

Nothing is missed: a producer whose SET lost found the key set, so a task was published and has not
yet deleted it; that task's DEL comes after the producer's commit, and its read after its DEL, so
the read sees the producer's rows. The key's time to live bounds the wait if a published message is
lost (a broker outage): the next producer after it lapses publishes again, and the beat safety nets
(the sweep, the relay schedule) cover a quiet system.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis

from settings import get_settings

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    # Short timeouts: a producer is usually answering an HTTP request, and the safety nets heal.
    return redis.Redis.from_url(get_settings().redis_url, socket_timeout=1, socket_connect_timeout=1)


@dataclass(frozen=True)
class Wake:
    key: str
    ttl_ms: int

    def request(self, task: Any, **options: Any) -> bool:
        """Publish `task` unless one is already on its way. False when Redis or the broker refused."""
        try:
            if not redis_client().set(self.key, "1", nx=True, px=self.ttl_ms):
                return True  # an earlier wake has not started yet: it will see our rows
        except redis.RedisError:
            logger.warning("wake key unavailable; publishing anyway", extra={"key": self.key})
        try:
            task.apply_async(retry=False, **options)
        except Exception:
            logger.warning("could not publish a wake; the safety net will run it", exc_info=True)
            self._forget()
            return False
        return True

    def started(self) -> None:
        """Called by the task before it reads: producers from now on publish a new wake."""
        self._forget()

    def _forget(self) -> None:
        try:
            redis_client().delete(self.key)
        except redis.RedisError:
            logger.warning("wake key not cleared; it lapses on its own", extra={"key": self.key})
