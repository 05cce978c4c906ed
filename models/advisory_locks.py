"""Every Postgres advisory lock key the application takes, in one place.

An advisory lock is a process-wide mutex named by a number: two features that pick the same number
serialise each other by accident (the outbox relay and the settlement batches once shared 7261004,
so every batch stopped event publishing platform-wide while it ran). Each key is declared here once,
`enum.unique` refuses a repeated value at import, and a unit test refuses a key written as a bare
number anywhere else in the tree. Importable from every layer: it imports nothing of the project.
"""

from __future__ import annotations

import enum


@enum.unique
class AdvisoryLock(enum.IntEnum):
    # One migrator at a time: web, worker and beat may all start together (migrations/env.py).
    MIGRATIONS = 7261001
    # One reconciliation run at a time (ledger/integrity/reconciliation.py).
    RECONCILIATION_RUN = 7261003
    # One cross-organisation settlement batch at a time (ledger/clearing/batches.py).
    SETTLEMENT_BATCH = 7261004
    # One outbox relay at a time, so events go out in outbox order (tasks/outbox.py).
    OUTBOX_RELAY = 7261005
    # One fold of the activity deltas into the rollup at a time (ledger/analytics.py).
    ACTIVITY_FOLD = 7261020
