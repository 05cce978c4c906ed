"""Scheduled reconciliation: incremental every few minutes, a full pass nightly (celeryconfig)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from ledger.access import Actor
from ledger.errors import Conflict
from ledger.integrity.audit import SYSTEM_ORIGIN, Origin
from ledger.integrity.reconciliation import reconcile
from models import ReconciliationMode
from models.db import session_factory
from workers.app import app

logger = logging.getLogger(__name__)


def run_reconciliation(
    mode: ReconciliationMode,
    *,
    organization_id: uuid.UUID | None = None,
    actor: Actor | None = None,
    trigger: str = "beat",
    origin: Origin = SYSTEM_ORIGIN,
) -> dict[str, Any]:
    """One run in its own transaction (the run must start it). Returns the run's id and outcome."""
    with session_factory().begin() as session:
        result = reconcile(
            session, mode=mode, organization_id=organization_id, actor=actor, trigger=trigger, origin=origin
        )
        run = result.run
        return {"run_id": run.id, "status": run.status.value, "findings": len(result.findings)}


def _scheduled(mode: ReconciliationMode) -> dict[str, Any]:
    try:
        outcome = run_reconciliation(mode)
    except Conflict:
        logger.info("reconciliation already running; skipped", extra={"mode": mode.value})
        return {"skipped": True}
    return {**outcome, "run_id": str(outcome["run_id"])}


@app.task(name="tasks.reconcile_incremental", acks_late=True, ignore_result=True)
def reconcile_incremental() -> dict[str, Any]:
    return _scheduled(ReconciliationMode.INCREMENTAL)


@app.task(name="tasks.reconcile_full", acks_late=True, ignore_result=True, time_limit=3600, soft_time_limit=3500)
def reconcile_full() -> dict[str, Any]:
    return _scheduled(ReconciliationMode.FULL)
