"""Process wiring: a forked worker child must not reuse the parent's database connections."""

from __future__ import annotations

import logging

from celery.signals import worker_process_init

from models.db import dispose_engine

logger = logging.getLogger(__name__)


@worker_process_init.connect
def _fresh_connections_after_fork(**_kwargs: object) -> None:
    dispose_engine()
