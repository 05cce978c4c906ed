"""Expiring reviews: beat's sweeper fails transfers left IN_REVIEW past the review window.

`ledger.intents.review.expire_due` locks what it expires (SKIP LOCKED) and expires only transfers
still IN_REVIEW: running it twice, or beside a reviewer's decision, fails a transfer at most once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from ledger.intents.review import expire_due
from models.db import session_factory
from settings import get_settings
from workers.app import app

logger = logging.getLogger(__name__)


@app.task(name="tasks.sweep_expired_reviews", acks_late=True, ignore_result=True)
def sweep_expired_reviews() -> int:
    """Fail every transfer IN_REVIEW for longer than the review window, in bounded batches."""
    settings = get_settings()
    window = timedelta(seconds=settings.review_window_seconds)
    expired = 0
    for _ in range(settings.hold_sweep_batches_max):
        with session_factory().begin() as session:
            done = expire_due(session, window=window, limit=settings.review_sweep_batch_size_max)
        expired += done
        if done < settings.review_sweep_batch_size_max:
            break
    if expired:
        logger.info("reviews expired by the sweeper", extra={"count": expired})
    return expired
