"""Purging idempotency keys past their time to live (beat, every few minutes; celeryconfig)."""

from __future__ import annotations

import logging
from datetime import timedelta

from ledger.idempotency import purge_expired_keys
from models.db import session_factory
from settings import get_settings
from workers.app import app

logger = logging.getLogger(__name__)


@app.task(name="tasks.purge_idempotency_keys", acks_late=True, ignore_result=True)
def purge_idempotency_keys() -> int:
    """Delete expired keys, one bounded batch per transaction, at most a bounded number of batches:
    a backlog larger than that is finished by the next runs. Returns how many keys went."""
    settings = get_settings()
    ttl = timedelta(hours=settings.idempotency_key_ttl_hours)
    batch = settings.idempotency_purge_batch_size_max
    purged = 0
    for _ in range(settings.idempotency_purge_batches_max):
        with session_factory().begin() as session:
            deleted = purge_expired_keys(session, ttl=ttl, limit=batch)
        purged += deleted
        if deleted < batch:
            break
    if purged:
        logger.info("idempotency keys purged", extra={"purged": purged, "ttl_hours": ttl.total_seconds() / 3600})
    return purged
