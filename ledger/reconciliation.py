"""Reconciliation: prove, in set-based SQL, that the ledger and the cached balances agree.

Checks, each one statement over the run's snapshot (REPEATABLE READ):
  * every wallet: cached balance = sum of its entries; cached version = number of its entries;
  * every wallet: balance_after and wallet_version form an unbroken chain (1, 2, 3, ...);
  * every COMPLETED transaction has entries summing to zero; PENDING, FAILED, CANCELLED have none;
  * every currency: all wallet balances sum to zero (platform-wide runs only).

FULL checks everything. INCREMENTAL starts each wallet from its mark (the version and balance the
last clean run proved) and re-checks only transactions finalised since the last clean run, so its
cost follows new activity rather than the size of the ledger. A wallet with a finding loses its
mark, so every later run keeps naming it until someone repairs it. A run never changes money.

The caller owns the transaction, which must be fresh: `reconcile` makes it REPEATABLE READ.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, or_, select, text
from sqlalchemy.orm import Session

from ledger import audit, events
from ledger.access import Actor, require_org_admin
from ledger.errors import Conflict, NotFound
from ledger.pagination import Page, paginate
from models import (
    ReconciliationCheck,
    ReconciliationFinding,
    ReconciliationMode,
    ReconciliationRun,
    ReconciliationStatus,
)
from models.ids import new_id

logger = logging.getLogger(__name__)

# Bounds: a corrupted ledger must not turn one run into an unbounded result set.
FINDINGS_PER_CHECK_MAX = 1000
# Incremental runs re-check transactions finalised this long before the last clean run started,
# to cover intents whose settlement committed a little after their completed_at was stamped.
TRANSACTION_OVERLAP = timedelta(minutes=10)
PLATFORM_CURSOR = "platform"
RUN_STATEMENT_TIMEOUT_MS = 15 * 60 * 1000
# One run at a time (pg_try_advisory_xact_lock key).
RUN_LOCK_KEY = 7261003
# Findings logged one by one at CRITICAL; the rest are counted in one line.
FINDINGS_LOGGED_MAX = 50

RUN_RECONCILIATION_NOTE = "vaultcraft.reconciliation"


@dataclass
class RunResult:
    run: ReconciliationRun
    findings: list[dict[str, Any]] = field(default_factory=list)


_CAPTURE = text(
    """
    CREATE TEMP TABLE recon_wallets ON COMMIT DROP AS
    SELECT w.id AS wallet_id, w.organization_id, w.currency, w.balance, w.version,
           CASE WHEN :full THEN 0 ELSE COALESCE(m.version, 0) END AS mark_version,
           CASE WHEN :full THEN 0 ELSE COALESCE(m.balance, 0) END AS mark_balance
      FROM wallets AS w
      LEFT JOIN reconciliation_marks AS m ON m.wallet_id = w.id
     WHERE (CAST(:org AS uuid) IS NULL OR w.organization_id = CAST(:org AS uuid))
       AND (:full OR m.wallet_id IS NULL OR m.version <> w.version OR m.balance <> w.balance)
    """
)

_SIGNED = "CASE WHEN e.direction = 'CREDIT' THEN e.amount ELSE -e.amount END"

_BALANCES = text(
    f"""
    WITH sums AS (
        SELECT e.wallet_id, SUM({_SIGNED}) AS total, COUNT(*) AS n, MAX(e.wallet_version) AS last_version
          FROM ledger_entries AS e
          JOIN recon_wallets AS c ON c.wallet_id = e.wallet_id AND e.wallet_version > c.mark_version
         GROUP BY e.wallet_id
    )
    SELECT c.wallet_id, c.organization_id, c.currency, c.balance, c.version,
           c.mark_balance + COALESCE(s.total, 0) AS entries_balance,
           c.mark_version + COALESCE(s.n, 0) AS entries_count,
           GREATEST(c.mark_version, COALESCE(s.last_version, 0)) AS last_version
      FROM recon_wallets AS c
      LEFT JOIN sums AS s ON s.wallet_id = c.wallet_id
     WHERE c.balance <> c.mark_balance + COALESCE(s.total, 0)
        OR c.version <> c.mark_version + COALESCE(s.n, 0)
        OR c.version <> GREATEST(c.mark_version, COALESCE(s.last_version, 0))
     ORDER BY c.wallet_id
     LIMIT :cap
    """
)

_CHAIN = text(
    f"""
    SELECT wallet_id, organization_id, currency, transaction_id, wallet_version, previous_version,
           balance_after, expected_after
      FROM (
        SELECT e.wallet_id, c.organization_id, c.currency, e.transaction_id, e.wallet_version, e.balance_after,
               LAG(e.wallet_version, 1, c.mark_version) OVER w AS previous_version,
               LAG(e.balance_after, 1, c.mark_balance) OVER w + {_SIGNED} AS expected_after
          FROM ledger_entries AS e
          JOIN recon_wallets AS c ON c.wallet_id = e.wallet_id AND e.wallet_version > c.mark_version
        WINDOW w AS (PARTITION BY e.wallet_id ORDER BY e.wallet_version)
      ) AS chain
     WHERE wallet_version <> previous_version + 1 OR balance_after <> expected_after
     ORDER BY wallet_id, wallet_version
     LIMIT :cap
    """
)

_TRANSACTION_SCOPE = """
       (CAST(:org AS uuid) IS NULL
        OR t.source_wallet_id IN (SELECT id FROM wallets WHERE organization_id = CAST(:org AS uuid))
        OR t.destination_wallet_id IN (SELECT id FROM wallets WHERE organization_id = CAST(:org AS uuid)))
   AND (CAST(:since AS timestamptz) IS NULL OR t.completed_at >= CAST(:since AS timestamptz))
"""

_TRANSACTIONS = text(
    f"""
    SELECT t.id, t.organization_id, t.currency, t.status, COALESCE(SUM({_SIGNED}), 0) AS total,
           COUNT(e.id) AS entry_count
      FROM transactions AS t
      LEFT JOIN ledger_entries AS e ON e.transaction_id = t.id
     WHERE {_TRANSACTION_SCOPE}
     GROUP BY t.id
    HAVING (t.status = 'COMPLETED' AND (COUNT(e.id) = 0 OR SUM({_SIGNED}) <> 0))
        OR (t.status <> 'COMPLETED' AND COUNT(e.id) > 0)
     ORDER BY t.id
     LIMIT :cap
    """
)

_TRANSACTIONS_CHECKED = text(f"SELECT COUNT(*) FROM transactions AS t WHERE {_TRANSACTION_SCOPE}")

_CURRENCIES = text(
    "SELECT currency, SUM(balance) AS total FROM wallets GROUP BY currency HAVING SUM(balance) <> 0 ORDER BY currency"
)

_COVERAGE = text("SELECT COUNT(*), COALESCE(SUM(version - mark_version), 0) FROM recon_wallets")

_FORGET_MARKS = text("DELETE FROM reconciliation_marks WHERE wallet_id = ANY(CAST(:ids AS uuid[]))")

_ADVANCE_MARKS = text(
    """
    INSERT INTO reconciliation_marks (wallet_id, version, balance, checked_at)
    SELECT wallet_id, version, balance, clock_timestamp() FROM recon_wallets
     WHERE wallet_id <> ALL(CAST(:drifted AS uuid[]))
    ON CONFLICT (wallet_id) DO UPDATE
       SET version = EXCLUDED.version, balance = EXCLUDED.balance, checked_at = EXCLUDED.checked_at
    """
)


def _finding(check: ReconciliationCheck, **values: Any) -> dict[str, Any]:
    # SUM() answers numeric: every amount and version is an integer again here.
    for key in ("expected", "actual"):
        if values.get(key) is not None:
            values[key] = int(values[key])
    expected, actual = values.get("expected"), values.get("actual")
    difference = None if expected is None or actual is None else actual - expected
    return {"check": check, "difference": difference, **values}


def _wallet_findings(session: Session) -> list[dict[str, Any]]:
    found = []
    for row in session.execute(_BALANCES, {"cap": FINDINGS_PER_CHECK_MAX}):
        where = {"wallet_id": row.wallet_id, "organization_id": row.organization_id, "currency": row.currency}
        if row.balance != row.entries_balance:
            found.append(
                _finding(
                    ReconciliationCheck.BALANCE_MISMATCH, expected=row.entries_balance, actual=row.balance, **where
                )
            )
        if row.version != row.entries_count or row.version != row.last_version:
            detail = {"entries": row.entries_count, "last_entry_version": row.last_version}
            found.append(
                _finding(
                    ReconciliationCheck.VERSION_MISMATCH,
                    expected=row.entries_count,
                    actual=row.version,
                    detail=detail,
                    **where,
                )
            )
    return found


def _chain_findings(session: Session) -> list[dict[str, Any]]:
    found = []
    for row in session.execute(_CHAIN, {"cap": FINDINGS_PER_CHECK_MAX}):
        where = {
            "wallet_id": row.wallet_id,
            "organization_id": row.organization_id,
            "currency": row.currency,
            "transaction_id": row.transaction_id,
        }
        if row.wallet_version != row.previous_version + 1:
            detail = {"previous_version": row.previous_version, "wallet_version": row.wallet_version}
            found.append(
                _finding(
                    ReconciliationCheck.VERSION_GAP,
                    expected=row.previous_version + 1,
                    actual=row.wallet_version,
                    detail=detail,
                    **where,
                )
            )
        elif row.balance_after != row.expected_after:
            found.append(
                _finding(
                    ReconciliationCheck.BALANCE_CHAIN_BROKEN,
                    expected=row.expected_after,
                    actual=row.balance_after,
                    detail={"wallet_version": row.wallet_version},
                    **where,
                )
            )
    return found


def _transaction_findings(session: Session, params: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for row in session.execute(_TRANSACTIONS, {**params, "cap": FINDINGS_PER_CHECK_MAX}):
        check = (
            ReconciliationCheck.TRANSACTION_UNBALANCED
            if row.status == "COMPLETED"
            else ReconciliationCheck.ENTRIES_ON_UNPOSTED_TRANSACTION
        )
        expected, actual = (0, int(row.total)) if row.status == "COMPLETED" else (0, int(row.entry_count))
        found.append(
            _finding(
                check,
                transaction_id=row.id,
                organization_id=row.organization_id,
                currency=row.currency,
                expected=expected,
                actual=actual,
                detail={"status": row.status, "entries": int(row.entry_count), "entries_sum": int(row.total)},
            )
        )
    return found


def _currency_findings(session: Session) -> list[dict[str, Any]]:
    return [
        _finding(ReconciliationCheck.CURRENCY_NOT_ZERO, currency=row.currency, expected=0, actual=int(row.total))
        for row in session.execute(_CURRENCIES)
    ]


def _transactions_since(session: Session, mode: ReconciliationMode, organization_id: uuid.UUID | None) -> Any:
    """The completed_at incremental transaction checks start from; None means every transaction."""
    if mode is ReconciliationMode.FULL or organization_id is not None:
        return None
    cursor = session.execute(
        text("SELECT completed_through FROM reconciliation_cursors WHERE name = :name"), {"name": PLATFORM_CURSOR}
    ).scalar_one_or_none()
    return None if cursor is None else cursor - TRANSACTION_OVERLAP


def _advance(session: Session, findings: list[dict[str, Any]], *, clean: bool, platform: bool) -> None:
    drifted = sorted({f["wallet_id"] for f in findings if f.get("wallet_id")})
    if drifted:
        session.execute(_FORGET_MARKS, {"ids": drifted})
    session.execute(_ADVANCE_MARKS, {"drifted": drifted})
    if clean and platform:
        session.execute(
            text(
                """
                INSERT INTO reconciliation_cursors (name, completed_through) VALUES (:name, now())
                ON CONFLICT (name) DO UPDATE SET completed_through = EXCLUDED.completed_through
                """
            ),
            {"name": PLATFORM_CURSOR},
        )


def _begin_snapshot(session: Session) -> None:
    session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    # A full pass reads the whole ledger; it gets longer than a request's statement bound.
    session.execute(text(f"SET LOCAL statement_timeout = {int(RUN_STATEMENT_TIMEOUT_MS)}"))
    if not session.execute(select(text("pg_try_advisory_xact_lock(:key)")), {"key": RUN_LOCK_KEY}).scalar_one():
        raise Conflict("a reconciliation run is already in progress; retry shortly", code="RECONCILIATION_RUNNING")


def _check(
    session: Session, mode: ReconciliationMode, organization_id: uuid.UUID | None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    params = {"org": organization_id, "since": _transactions_since(session, mode, organization_id)}
    session.execute(_CAPTURE, {"full": mode is ReconciliationMode.FULL, "org": organization_id})
    session.execute(text("ANALYZE recon_wallets"))
    wallets_checked, entries_checked = session.execute(_COVERAGE).one()
    findings = [*_wallet_findings(session), *_chain_findings(session), *_transaction_findings(session, params)]
    if organization_id is None:
        findings.extend(_currency_findings(session))
    counts = {
        "wallets_checked": int(wallets_checked),
        "entries_checked": int(entries_checked),
        "transactions_checked": int(session.execute(_TRANSACTIONS_CHECKED, params).scalar_one()),
    }
    return findings, counts


def reconcile(
    session: Session,
    *,
    mode: ReconciliationMode,
    organization_id: uuid.UUID | None = None,
    actor: Actor | None = None,
    trigger: str = "beat",
    origin: audit.Origin = audit.SYSTEM_ORIGIN,
) -> RunResult:
    """Run every check over one snapshot, record the run and its findings, and report drift
    (CRITICAL log, an outbox event). Must be the first thing the caller's transaction does."""
    _begin_snapshot(session)
    started = time.monotonic()
    findings, counts = _check(session, mode, organization_id)
    status = ReconciliationStatus.DRIFT if findings else ReconciliationStatus.CLEAN
    _advance(session, findings, clean=not findings, platform=organization_id is None)
    run = ReconciliationRun(
        id=new_id(),
        mode=mode,
        status=status,
        organization_id=organization_id,
        triggered_by=actor.user_id if actor else None,
        trigger=trigger,
        finished_at=session.execute(select(text("clock_timestamp()"))).scalar_one(),
        duration_ms=int((time.monotonic() - started) * 1000),
        findings_count=len(findings),
        **counts,
    )
    session.add(run)
    session.flush()
    session.add_all(ReconciliationFinding(id=new_id(), run_id=run.id, **f) for f in findings)
    _report(session, run, findings, actor, origin)
    return RunResult(run, findings)


def _report(
    session: Session,
    run: ReconciliationRun,
    findings: list[dict[str, Any]],
    actor: Actor | None,
    origin: audit.Origin,
) -> None:
    after = {"status": run.status, "mode": run.mode, "findings_count": run.findings_count, "scope": run.organization_id}
    audit.record(
        session,
        actor,
        "reconciliation.run",
        target=run,
        after=after,
        organization_id=run.organization_id,
        actor_label=None if actor else f"system:{run.trigger}",
        origin=origin,
    )
    session.info[RUN_RECONCILIATION_NOTE] = (run.mode.value, run.status.value, len(findings))
    if not findings:
        logger.info("reconciliation clean", extra={"run_id": str(run.id), "mode": run.mode.value})
        return
    events.record_drift_event(session, run.id, findings)
    for finding in findings[:FINDINGS_LOGGED_MAX]:
        logger.critical(
            "ledger drift: %s on %s (expected %s, actual %s, difference %s)",
            finding["check"].value,
            _subject(finding),
            finding.get("expected"),
            finding.get("actual"),
            finding.get("difference"),
            extra={"run_id": str(run.id), **{k: str(v) for k, v in finding.items() if k != "detail"}},
        )
    if len(findings) > FINDINGS_LOGGED_MAX:
        logger.critical("ledger drift: %d more findings", len(findings) - FINDINGS_LOGGED_MAX)


def _subject(finding: dict[str, Any]) -> str:
    """What a finding is about, named with its kind: `wallet <id>`, `transaction <id>`, `currency INR`."""
    for kind in ("wallet", "transaction"):
        if finding.get(f"{kind}_id"):
            return f"{kind} {finding[f'{kind}_id']}"
    return f"currency {finding.get('currency')}"


# --- reading runs --------------------------------------------------------------------------------


def _visible_runs(actor: Actor) -> Select[tuple[ReconciliationRun]]:
    """Operators see every run; OWNER/ADMIN see their organisation's runs and platform-wide ones."""
    query = select(ReconciliationRun)
    if actor.is_operator:
        return query
    require_org_admin(actor)
    return query.where(
        or_(ReconciliationRun.organization_id == actor.organization_id, ReconciliationRun.organization_id.is_(None))
    )


def list_runs(session: Session, actor: Actor, *, limit: int, cursor: str | None) -> Page[ReconciliationRun]:
    return paginate(
        session,
        _visible_runs(actor),
        keys=(ReconciliationRun.started_at, ReconciliationRun.id),
        kinds=(datetime, uuid.UUID),
        limit=limit,
        cursor=cursor,
    )


def get_run(session: Session, actor: Actor, run_id: uuid.UUID) -> tuple[ReconciliationRun, list[ReconciliationFinding]]:
    """A run and the findings the caller may see: an organisation sees only its own wallets' findings."""
    run = session.scalars(_visible_runs(actor).where(ReconciliationRun.id == run_id)).one_or_none()
    if run is None:
        raise NotFound("reconciliation run not found", code="RECONCILIATION_RUN_NOT_FOUND")
    query = select(ReconciliationFinding).where(ReconciliationFinding.run_id == run.id)
    if not actor.is_operator:
        query = query.where(ReconciliationFinding.organization_id == actor.organization_id)
    return run, list(session.scalars(query.order_by(ReconciliationFinding.check, ReconciliationFinding.wallet_id)))
