"""The Celery application: configured from celeryconfig.py, wired to the process signals."""

from __future__ import annotations

import logging

from celery import Celery

app = Celery("vaultcraft")
app.config_from_object("celeryconfig")


class _SubSecondCountdownsAreHeld(logging.Filter):
    """On quorum queues Celery warns, on every publish with a countdown and once per queue at worker
    start, that the direct exchange keeps the message out of native delayed delivery, so the worker
    holds it until its time. That is what the debounced wakes want: their countdowns are a fraction
    of a second (which native delayed delivery, counting whole seconds, refuses), and they are held
    exactly as on Redis. See celeryconfig.py."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return "direct exchange" not in message or "native delayed delivery" not in message


for _logger in ("celery.app.base", "kombu.transport.native_delayed_delivery"):
    logging.getLogger(_logger).addFilter(_SubSecondCountdownsAreHeld())

import workers.signals  # noqa: E402,F401  (registers the signal handlers)
from workers.heartbeat import Heartbeat  # noqa: E402

app.steps["worker"].add(Heartbeat)
