"""The Celery application: configured from celeryconfig.py, wired to the process signals."""

from __future__ import annotations

from celery import Celery

app = Celery("vaultcraft")
app.config_from_object("celeryconfig")

import workers.signals  # noqa: E402,F401  (registers the signal handlers)
from workers.heartbeat import Heartbeat  # noqa: E402

app.steps["worker"].add(Heartbeat)
