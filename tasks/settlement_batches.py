"""The cross-organisation settlement batch: a beat task, and the runner the API and the CLI share."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.exc import DBAPIError

from ledger.access import Actor
from ledger.clearing.batches import audit_run, run_batch
from ledger.integrity.audit import SYSTEM_ORIGIN, Origin
from models import BatchTrigger, SettlementBatch
from models.db import session_factory
from settings import get_settings
from tasks.settlement import CONTENTION_ERRORS
from workers.app import app

logger = logging.getLogger(__name__)


def run_settlement_batch(
    trigger: BatchTrigger,
    *,
    actor: Actor | None = None,
    cut_off: datetime | None = None,
    origin: Origin = SYSTEM_ORIGIN,
) -> tuple[SettlementBatch, bool]:
    """Run one batch in its own database transaction; lock contention is retried a bounded number of times.

    `actor` is the operator who asked (None for beat and the CLI); the run is audited in the same
    transaction. Returns the batch and whether this call created it (False: the cut-off was already settled).
    """
    created_by = actor.user_id if actor else None
    attempts_max = get_settings().settle_retries_max
    for attempt in range(1, attempts_max + 1):
        try:
            with session_factory().begin() as session:
                run = run_batch(session, trigger=trigger, created_by=created_by, cut_off=cut_off)
                audit_run(session, run, actor=actor, origin=origin)
            logger.info(
                "settlement batch",
                extra={"batch_id": str(run.batch.id), "new_batch": run.created, "transfers": run.batch.transfer_count},
            )
            if run.created:
                _alert_skips(run.batch)
            return run.batch, run.created
        except DBAPIError as error:
            if not isinstance(error.orig, CONTENTION_ERRORS) or attempt == attempts_max:
                raise
            logger.warning("settlement batch contention, retrying", extra={"attempt": attempt})
    raise AssertionError("unreachable")


def _alert_skips(batch: SettlementBatch) -> None:
    """One ERROR line per organisation the committed batch left out: its obligations wait until
    someone makes its treasury or clearing wallet ACTIVE again, and every batch until then says so."""
    for skip in batch.skipped:
        logger.error(
            "settlement batch skipped an organisation: its %s is %s",
            "treasury" if skip["reason"] == "TREASURY_NOT_ACTIVE" else "clearing wallet",
            skip["wallet_status"],
            extra={"batch_id": str(batch.id), **skip},
        )


@app.task(name="tasks.run_settlement_batch", acks_late=True)
def run_scheduled_settlement_batch() -> dict[str, object]:
    """Beat's batch: settles everything completed up to now that no earlier batch settled."""
    batch, _ = run_settlement_batch(BatchTrigger.SCHEDULE)
    return {
        "batch_id": str(batch.id),
        "transfer_count": batch.transfer_count,
        "skipped_organizations": len(batch.skipped),
    }
