"""Process wiring: a forked worker child must not reuse the parent's database connections; JSON logs;
the request id travels from the API into tasks in a message header; metrics files of dead children."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import (
    before_task_publish,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
)

from models.db import dispose_engine
from ops import metrics
from ops.logging_setup import REQUEST_ID_HEADER, configure_logging, request_id_var

logger = logging.getLogger(__name__)


@worker_process_init.connect
def _fresh_connections_after_fork(**_kwargs: object) -> None:
    dispose_engine()


@setup_logging.connect
def _json_logs(loglevel: str | int | None = None, **_kwargs: object) -> None:
    """Celery leaves logging to us when this signal has a receiver; honour its --loglevel."""
    configure_logging("worker", loglevel)


metrics.install_commit_hooks()


@worker_process_shutdown.connect
def _drop_metrics_files(**_kwargs: object) -> None:
    metrics.mark_process_dead(os.getpid())


@before_task_publish.connect
def _carry_request_id(headers: dict[str, Any] | None = None, **_kwargs: object) -> None:
    request_id = request_id_var.get()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


@task_prerun.connect
def _adopt_request_id(task: Any = None, **_kwargs: object) -> None:
    request_id_var.set(task.request.get(REQUEST_ID_HEADER) if task is not None else None)


@task_postrun.connect
def _forget_request_id(**_kwargs: object) -> None:
    request_id_var.set(None)
