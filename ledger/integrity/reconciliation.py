"""Reconciliation: prove, in set-based SQL, that the ledger and the cached balances agree.

Checks, each one statement over the run's snapshot (REPEATABLE READ):
  * every wallet: cached balance = sum of its entries; cached version = number of its entries;
  * every wallet: balance_after and wallet_version form an unbroken chain (1, 2, 3, ...);
  * every SYSTEM clearing wallet: balance = the net of its unsettled cross-organisation obligations;
  * every COMPLETED transaction has entries summing to zero; PENDING, FAILED, CANCELLED have none;
  * every currency: all wallet balances sum to zero (platform-wide runs only).

FULL checks everything. INCREMENTAL starts each wallet from its mark (the version and balance the
last clean run proved) and reads the wallets whose row changed since, or that have entries written
since the last run beyond their mark (a row left behind by its entries); it re-checks transactions
finalised since the last clean run, every PENDING one, and every one with entries written since. Its
cost follows new activity rather than the size of the ledger. A wallet with a finding loses its mark,
so every later run keeps naming it until someone repairs it. A run never changes money.

Each check reports at most FINDINGS_PER_CHECK_MAX findings, wallet by wallet in id order. When a
wallet check reaches that cap, the wallets after the last one it reported keep their marks (nothing
vouches for them) and the run records where it stopped: the next run of the same scope reads them
again and starts its order after that wallet, so drift beyond the cap is reported by the next run.

The caller owns the transaction, which must be fresh: `reconcile` makes it REPEATABLE READ.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, TextClause, func, or_, select, text
from sqlalchemy.orm import Session

from ledger.access import Actor, not_found, require_org_admin
from ledger.errors import Conflict
from ledger.integrity import audit, events
from ledger.pagination import Page, paginate
from models import (
    CLEARING_WALLET_NAME,
    ReconciliationCheck,
    ReconciliationFinding,
    ReconciliationMode,
    ReconciliationRun,
    ReconciliationStatus,
    WalletType,
)
from models.advisory_locks import AdvisoryLock
from models.ids import new_id

logger = logging.getLogger(__name__)

# Bounds: a corrupted ledger must not turn one run into an unbounded result set.
FINDINGS_PER_CHECK_MAX = 1000
# Incremental runs re-check transactions finalised (and entries written) this long before the run
# they follow started, to cover postings that committed a little after they stamped their time.
TRANSACTION_OVERLAP = timedelta(minutes=10)
PLATFORM_CURSOR = "platform"
RUN_STATEMENT_TIMEOUT_MS = 15 * 60 * 1000
# One run at a time (pg_try_advisory_xact_lock key).
RUN_LOCK_KEY = int(AdvisoryLock.RECONCILIATION_RUN)
# Findings logged one by one at CRITICAL; the rest are counted in one line.
FINDINGS_LOGGED_MAX = 50

RUN_RECONCILIATION_NOTE = "vaultcraft.reconciliation"


@dataclass
class RunResult:
    run: ReconciliationRun
    findings: list[dict[str, Any]] = field(default_factory=list)


# The wallets a run reads, each with the mark it starts from. INCREMENTAL: wallets whose row moved
# from their mark, and wallets with entries written since the last run (`written`, over the BRIN
# index on created_at) past their mark's version: entries whose wallet row was left as it was. An
# entry at or below the mark's version written after the mark was proven was not there when it was
# proven: that wallet is read from its first entry (`rewind`). `wrapped`: wallets up to the one the
# previous run's capped check stopped at, which this run reports after the others.
_CAPTURE = text(
    f"""
    CREATE TEMP TABLE recon_wallets ON COMMIT DROP AS
    WITH written AS (
        SELECT e.wallet_id, bool_or(e.wallet_version <= m.version) AS rewind
          FROM ledger_entries AS e
          JOIN reconciliation_marks AS m ON m.wallet_id = e.wallet_id
         WHERE NOT :full
           AND e.created_at >= COALESCE(CAST(:entries_since AS timestamptz), '-infinity')
           AND (e.wallet_version > m.version OR e.created_at > m.checked_at)
         GROUP BY e.wallet_id
    )
    SELECT w.id AS wallet_id, w.organization_id, w.currency, w.balance, w.version,
           w.type = '{WalletType.SYSTEM.value}' AND w.name = '{CLEARING_WALLET_NAME}' AS clearing,
           CASE WHEN :full OR r.rewind THEN 0 ELSE COALESCE(m.version, 0) END AS mark_version,
           CASE WHEN :full OR r.rewind THEN 0 ELSE COALESCE(m.balance, 0) END AS mark_balance,
           (w.id <= CAST(:resume_after AS uuid)) IS TRUE AS wrapped
      FROM wallets AS w
      LEFT JOIN reconciliation_marks AS m ON m.wallet_id = w.id
      LEFT JOIN written AS r ON r.wallet_id = w.id
     WHERE (CAST(:org AS uuid) IS NULL OR w.organization_id = CAST(:org AS uuid))
       AND (:full OR m.wallet_id IS NULL OR m.version <> w.version OR m.balance <> w.balance
            OR r.wallet_id IS NOT NULL)
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
    SELECT c.wallet_id, c.wrapped, c.organization_id, c.currency, c.balance, c.version,
           c.mark_balance + COALESCE(s.total, 0) AS entries_balance,
           c.mark_version + COALESCE(s.n, 0) AS entries_count,
           GREATEST(c.mark_version, COALESCE(s.last_version, 0)) AS last_version
      FROM recon_wallets AS c
      LEFT JOIN sums AS s ON s.wallet_id = c.wallet_id
     WHERE c.balance <> c.mark_balance + COALESCE(s.total, 0)
        OR c.version <> c.mark_version + COALESCE(s.n, 0)
        OR c.version <> GREATEST(c.mark_version, COALESCE(s.last_version, 0))
     ORDER BY c.wrapped, c.wallet_id
     LIMIT :cap
    """
)

_CHAIN = text(
    f"""
    SELECT wallet_id, wrapped, organization_id, currency, transaction_id, wallet_version, previous_version,
           balance_after, expected_after
      FROM (
        SELECT e.wallet_id, c.wrapped, c.organization_id, c.currency, e.transaction_id, e.wallet_version,
               e.balance_after,
               LAG(e.wallet_version, 1, c.mark_version) OVER w AS previous_version,
               LAG(e.balance_after, 1, c.mark_balance) OVER w + {_SIGNED} AS expected_after
          FROM ledger_entries AS e
          JOIN recon_wallets AS c ON c.wallet_id = e.wallet_id AND e.wallet_version > c.mark_version
        WINDOW w AS (PARTITION BY e.wallet_id ORDER BY e.wallet_version)
      ) AS chain
     WHERE wallet_version <> previous_version + 1 OR balance_after <> expected_after
     ORDER BY wrapped, wallet_id, wallet_version
     LIMIT :cap
    """
)

_TRANSACTION_ORGANIZATION = """
       (CAST(:org AS uuid) IS NULL
        OR t.source_wallet_id IN (SELECT id FROM wallets WHERE organization_id = CAST(:org AS uuid))
        OR t.destination_wallet_id IN (SELECT id FROM wallets WHERE organization_id = CAST(:org AS uuid)))
"""
# Incremental (`since` set): transactions finalised since, every PENDING one (no completed_at yet),
# and every one with entries written since (a FAILED or CANCELLED one given entries later). Each
# branch reads an index: completed_at, the PENDING partial index, the entries' BRIN on created_at.
# A statement of its own, not `:since IS NULL OR ...`: under an OR, Postgres cannot turn the IN into
# a join and tests every transaction against it.
_TRANSACTIONS_SINCE = """
   AND t.id IN (SELECT id FROM transactions WHERE completed_at >= CAST(:since AS timestamptz)
                UNION
                SELECT id FROM transactions WHERE status = 'PENDING'
                UNION
                SELECT transaction_id FROM ledger_entries WHERE created_at >= CAST(:since AS timestamptz))
"""


def _transactions(scope: str) -> TextClause:
    return text(
        f"""
        SELECT t.id, t.organization_id, t.currency, t.status, COALESCE(SUM({_SIGNED}), 0) AS total,
               COUNT(e.id) AS entry_count
          FROM transactions AS t
          LEFT JOIN ledger_entries AS e ON e.transaction_id = t.id
         WHERE {scope}
         GROUP BY t.id
        HAVING (t.status = 'COMPLETED' AND t.type <> 'HOLD' AND (COUNT(e.id) = 0 OR SUM({_SIGNED}) <> 0))
            OR ((t.status <> 'COMPLETED' OR t.type = 'HOLD') AND COUNT(e.id) > 0)
         ORDER BY t.id
         LIMIT :cap
        """
    )


# Keyed by whether the run is incremental (has a `since`).
_TRANSACTION_SCOPES = {False: _TRANSACTION_ORGANIZATION, True: _TRANSACTION_ORGANIZATION + _TRANSACTIONS_SINCE}
_TRANSACTIONS = {since: _transactions(scope) for since, scope in _TRANSACTION_SCOPES.items()}
_TRANSACTIONS_CHECKED = {
    since: text(f"SELECT COUNT(*) FROM transactions AS t WHERE {scope}") for since, scope in _TRANSACTION_SCOPES.items()
}

_UNSETTLED_OBLIGATION = "type = 'CLEARING' AND status = 'COMPLETED' AND settlement_batch_id IS NULL"

# A clearing wallet carries its organisation's unsettled obligations (ledger.clearing.routing): each one
# credits the debtor's clearing wallet (its destination) and debits the creditor's (its source), and
# a settlement batch moves each clearing wallet back by the net of the obligations it settles. So
# its balance is what it is still owed minus what it still owes. Unsettled obligations are few (one
# batch window) and have a partial index of their own.
_CLEARING = text(
    f"""
    WITH owed AS (
        SELECT wallet_id, SUM(amount) AS total
          FROM (SELECT destination_wallet_id AS wallet_id, amount FROM transactions WHERE {_UNSETTLED_OBLIGATION}
                UNION ALL
                SELECT source_wallet_id, -amount FROM transactions WHERE {_UNSETTLED_OBLIGATION}) AS obligations
         GROUP BY wallet_id
    )
    SELECT c.wallet_id, c.wrapped, c.organization_id, c.currency, c.balance, COALESCE(o.total, 0) AS owed
      FROM recon_wallets AS c
      LEFT JOIN owed AS o ON o.wallet_id = c.wallet_id
     WHERE c.clearing AND c.balance <> COALESCE(o.total, 0)
     ORDER BY c.wrapped, c.wallet_id
     LIMIT :cap
    """
)

# A wallet's held_amount against what remains of its open holds and its transfers in review (their
# whole amount is held: ledger/settlement/review.py). Every side is small: wallets with something
# held, HELD holds and IN_REVIEW transfers, each through a partial index. Every such wallet in the
# run's scope is compared, incremental runs too, not only wallets with new entries: holds change
# without entries.
_HELD = text(
    """
    WITH open_holds AS (
        SELECT wallet_id, SUM(total) AS total FROM (
            SELECT source_wallet_id AS wallet_id, amount - captured_amount AS total
              FROM holds WHERE status = 'HELD'
            UNION ALL
            SELECT source_wallet_id, amount FROM transactions WHERE status = 'IN_REVIEW'
        ) AS held GROUP BY wallet_id
    )
    , candidates AS (
        SELECT id FROM wallets WHERE held_amount <> 0
        UNION
        SELECT wallet_id FROM open_holds
    )
    SELECT w.id AS wallet_id, w.organization_id, w.currency, w.held_amount, COALESCE(o.total, 0) AS expected
      FROM candidates AS c
      JOIN wallets AS w ON w.id = c.id
      LEFT JOIN open_holds AS o ON o.wallet_id = w.id
     WHERE w.held_amount <> COALESCE(o.total, 0)
       AND (CAST(:org AS uuid) IS NULL OR w.organization_id = CAST(:org AS uuid))
     ORDER BY w.id
     LIMIT :cap
    """
)

_CURRENCIES = text(
    "SELECT currency, SUM(balance) AS total FROM wallets GROUP BY currency HAVING SUM(balance) <> 0 ORDER BY currency"
)

_COVERAGE = text("SELECT COUNT(*), COALESCE(SUM(version - mark_version), 0) FROM recon_wallets")

# What the runs before this one leave it: where the last run of the same scope stopped at a cap, and
# when the last run that read every wallet it captured (of this scope, or platform-wide) started.
_PREVIOUS_RUNS = text(
    """
    SELECT (SELECT capped_at_wallet_id FROM reconciliation_runs
             WHERE organization_id IS NOT DISTINCT FROM CAST(:org AS uuid)
             ORDER BY started_at DESC, id DESC LIMIT 1) AS resume_after,
           (SELECT max(started_at) FROM reconciliation_runs
             WHERE capped_at_wallet_id IS NULL
               AND (organization_id IS NULL OR organization_id = CAST(:org AS uuid))) AS covered_from
    """
)

_FORGET_MARKS = text("DELETE FROM reconciliation_marks WHERE wallet_id = ANY(CAST(:ids AS uuid[]))")

# Every wallet read and found clean, up to where a capped check stopped (`stop`): past it, nothing
# was reported, so nothing is vouched for.
_ADVANCE_MARKS = text(
    """
    INSERT INTO reconciliation_marks (wallet_id, version, balance, checked_at)
    SELECT wallet_id, version, balance, clock_timestamp() FROM recon_wallets
     WHERE wallet_id <> ALL(CAST(:drifted AS uuid[]))
       AND (CAST(:stop_id AS uuid) IS NULL
            OR (wrapped, wallet_id) <= (CAST(:stop_wrapped AS boolean), CAST(:stop_id AS uuid)))
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


# Where a wallet check stopped because it reached the cap: (wrapped, wallet_id) of its last row.
Stop = tuple[bool, uuid.UUID]


def _stop(rows: Sequence[Any]) -> Stop | None:
    return (rows[-1].wrapped, rows[-1].wallet_id) if len(rows) >= FINDINGS_PER_CHECK_MAX else None


def _wallet_findings(session: Session) -> tuple[list[dict[str, Any]], Stop | None]:
    rows = session.execute(_BALANCES, {"cap": FINDINGS_PER_CHECK_MAX}).all()
    found = []
    for row in rows:
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
    return found, _stop(rows)


def _chain_findings(session: Session) -> tuple[list[dict[str, Any]], Stop | None]:
    rows = session.execute(_CHAIN, {"cap": FINDINGS_PER_CHECK_MAX}).all()
    found = []
    for row in rows:
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
    return found, _stop(rows)


def _clearing_findings(session: Session) -> tuple[list[dict[str, Any]], Stop | None]:
    rows = session.execute(_CLEARING, {"cap": FINDINGS_PER_CHECK_MAX}).all()
    found = [
        _finding(
            ReconciliationCheck.CLEARING_BALANCE_MISMATCH,
            wallet_id=row.wallet_id,
            organization_id=row.organization_id,
            currency=row.currency,
            expected=row.owed,
            actual=row.balance,
        )
        for row in rows
    ]
    return found, _stop(rows)


def _transaction_findings(session: Session, params: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    query = _TRANSACTIONS[params["since"] is not None]
    for row in session.execute(query, {**params, "cap": FINDINGS_PER_CHECK_MAX}):
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


def _held_findings(session: Session, organization_id: uuid.UUID | None) -> list[dict[str, Any]]:
    return [
        _finding(
            ReconciliationCheck.HELD_MISMATCH,
            wallet_id=row.wallet_id,
            organization_id=row.organization_id,
            currency=row.currency,
            expected=row.expected,
            actual=row.held_amount,
        )
        for row in session.execute(_HELD, {"org": organization_id, "cap": FINDINGS_PER_CHECK_MAX})
    ]


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


def _advance(
    session: Session, findings: list[dict[str, Any]], stop: Stop | None, *, clean: bool, platform: bool
) -> None:
    drifted = sorted({f["wallet_id"] for f in findings if f.get("wallet_id")})
    if drifted:
        session.execute(_FORGET_MARKS, {"ids": drifted})
    stop_wrapped, stop_id = stop if stop is not None else (None, None)
    session.execute(_ADVANCE_MARKS, {"drifted": drifted, "stop_wrapped": stop_wrapped, "stop_id": stop_id})
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


@dataclass(frozen=True)
class Checked:
    findings: list[dict[str, Any]]
    counts: dict[str, int]
    # Set when a wallet check reached the cap (see the module's docstring).
    stop: Stop | None


def _capture(session: Session, mode: ReconciliationMode, organization_id: uuid.UUID | None) -> None:
    previous = session.execute(_PREVIOUS_RUNS, {"org": organization_id}).one()
    covered_from = previous.covered_from
    session.execute(
        _CAPTURE,
        {
            "full": mode is ReconciliationMode.FULL,
            "org": organization_id,
            "entries_since": None if covered_from is None else covered_from - TRANSACTION_OVERLAP,
            "resume_after": previous.resume_after,
        },
    )
    session.execute(text("ANALYZE recon_wallets"))


def _check(session: Session, mode: ReconciliationMode, organization_id: uuid.UUID | None) -> Checked:
    params = {"org": organization_id, "since": _transactions_since(session, mode, organization_id)}
    _capture(session, mode, organization_id)
    wallets_checked, entries_checked = session.execute(_COVERAGE).one()
    findings: list[dict[str, Any]] = []
    stops = []
    for wallet_check in (_wallet_findings, _chain_findings, _clearing_findings):
        found, stop = wallet_check(session)
        findings.extend(found)
        if stop is not None:
            stops.append(stop)
    findings.extend(_transaction_findings(session, params))
    findings.extend(_held_findings(session, organization_id))
    if organization_id is None:
        findings.extend(_currency_findings(session))
    counts = {
        "wallets_checked": int(wallets_checked),
        "entries_checked": int(entries_checked),
        "transactions_checked": int(
            session.execute(_TRANSACTIONS_CHECKED[params["since"] is not None], params).scalar_one()
        ),
    }
    return Checked(findings, counts, min(stops, default=None))


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
    # The transaction's start: the next run looks for entries written from a little before it.
    started_at = session.execute(select(func.now())).scalar_one()
    checked = _check(session, mode, organization_id)
    findings = checked.findings
    status = ReconciliationStatus.DRIFT if findings else ReconciliationStatus.CLEAN
    _advance(session, findings, checked.stop, clean=not findings, platform=organization_id is None)
    run = ReconciliationRun(
        id=new_id(),
        mode=mode,
        status=status,
        organization_id=organization_id,
        started_at=started_at,
        capped_at_wallet_id=None if checked.stop is None else checked.stop[1],
        triggered_by=actor.user_id if actor else None,
        trigger=trigger,
        finished_at=session.execute(select(text("clock_timestamp()"))).scalar_one(),
        duration_ms=int((time.monotonic() - started) * 1000),
        findings_count=len(findings),
        **checked.counts,
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
        raise not_found(
            session,
            ReconciliationRun,
            run_id,
            "reconciliation_run",
            "reconciliation run not found",
            "RECONCILIATION_RUN_NOT_FOUND",
        )
    query = select(ReconciliationFinding).where(ReconciliationFinding.run_id == run.id)
    if not actor.is_operator:
        query = query.where(ReconciliationFinding.organization_id == actor.organization_id)
    return run, list(session.scalars(query.order_by(ReconciliationFinding.check, ReconciliationFinding.wallet_id)))
