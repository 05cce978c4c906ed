"""Folding the activity deltas settling appends into the rollup the console's charts read (beat)."""

from __future__ import annotations

import logging

from ledger.analytics import FOLD_ROWS_MAX, fold_deltas
from models.db import session_factory
from workers.app import app

logger = logging.getLogger(__name__)

# A backlog (beat down for a while) folds in steps of FOLD_ROWS_MAX rows, each its own transaction.
FOLD_STEPS_MAX = 20


@app.task(name="tasks.fold_activity", acks_late=True, ignore_result=True)
def fold_activity() -> int:
    """Fold the deltas into the rollup; the number of delta rows folded. Readers are exact either way:
    folding keeps the deltas they add to the rollup few."""
    folded = 0
    for _ in range(FOLD_STEPS_MAX):
        with session_factory().begin() as session:
            moved = fold_deltas(session)
        if moved is None:  # another fold is under way
            break
        folded += moved
        if moved < FOLD_ROWS_MAX:
            break
    return folded
