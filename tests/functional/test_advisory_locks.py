"""The outbox relay and a settlement batch hold different advisory locks: neither stops the other."""

from __future__ import annotations

from sqlalchemy import func, select

from ledger.clearing.batches import BATCH_ADVISORY_LOCK_KEY
from models.db import session_factory
from tasks.outbox import _take_relay_lock


def test_the_relay_takes_its_lock_while_a_settlement_batch_holds_its_own(db):
    with session_factory().begin() as batch:
        batch.execute(select(func.pg_advisory_xact_lock(BATCH_ADVISORY_LOCK_KEY)))  # as run_batch does
        with session_factory().begin() as relay:
            assert _take_relay_lock(relay)
            relay.rollback()
        batch.rollback()
