"""Reconciliation runs, what each one found, and the per-wallet marks incremental runs start from."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, uuid_pk
from models.transaction import Transaction


class ReconciliationMode(enum.StrEnum):
    # Only what changed since each wallet's last clean mark (plus recently finalised transactions).
    INCREMENTAL = "INCREMENTAL"
    # Every wallet, every entry, every transaction.
    FULL = "FULL"


class ReconciliationStatus(enum.StrEnum):
    CLEAN = "CLEAN"
    DRIFT = "DRIFT"


class ReconciliationCheck(enum.StrEnum):
    # wallets.balance differs from the sum of the wallet's entries.
    BALANCE_MISMATCH = "BALANCE_MISMATCH"
    # wallets.version differs from the number / last version of the wallet's entries.
    VERSION_MISMATCH = "VERSION_MISMATCH"
    # An entry's balance_after is not the previous balance_after plus its own amount.
    BALANCE_CHAIN_BROKEN = "BALANCE_CHAIN_BROKEN"
    # wallet_version skips or repeats a number (an entry is missing).
    VERSION_GAP = "VERSION_GAP"
    # A COMPLETED transaction's entries do not sum to zero, or it has none.
    TRANSACTION_UNBALANCED = "TRANSACTION_UNBALANCED"
    # A PENDING, FAILED or CANCELLED transaction has entries.
    ENTRIES_ON_UNPOSTED_TRANSACTION = "ENTRIES_ON_UNPOSTED_TRANSACTION"
    # A SYSTEM clearing wallet's balance differs from the net of its unsettled obligations.
    CLEARING_BALANCE_MISMATCH = "CLEARING_BALANCE_MISMATCH"
    # All wallet balances of a currency do not sum to zero.
    CURRENCY_NOT_ZERO = "CURRENCY_NOT_ZERO"
    # A wallet's held_amount differs from the sum of what remains of its open (HELD) holds.
    HELD_MISMATCH = "HELD_MISMATCH"


class ReconciliationRun(Base):
    __tablename__ = "reconciliation_runs"
    __table_args__ = (Index("ix_reconciliation_runs_started", "started_at", "id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    mode: Mapped[ReconciliationMode] = mapped_column(
        Enum(ReconciliationMode, name="reconciliation_mode", native_enum=False, length=16)
    )
    status: Mapped[ReconciliationStatus] = mapped_column(
        Enum(ReconciliationStatus, name="reconciliation_status", native_enum=False, length=16)
    )
    # NULL: the whole platform (beat, an operator, the CLI); else one organisation's wallets.
    organization_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organizations.id"), nullable=True)
    triggered_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    trigger: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    duration_ms: Mapped[int] = mapped_column(default=0)
    wallets_checked: Mapped[int] = mapped_column(default=0)
    entries_checked: Mapped[int] = mapped_column(default=0)
    transactions_checked: Mapped[int] = mapped_column(default=0)
    findings_count: Mapped[int] = mapped_column(default=0)
    # Set when a wallet check stopped at its findings cap: the last wallet it reported. The wallets
    # after it kept their marks, and the next run of the same scope reports them first.
    capped_at_wallet_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)


class ReconciliationFinding(Base):
    __tablename__ = "reconciliation_findings"
    __table_args__ = (Index("ix_reconciliation_findings_run", "run_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("reconciliation_runs.id"))
    # "check" is an SQL keyword; the column is check_name, the attribute and the API field are `check`.
    check: Mapped[ReconciliationCheck] = mapped_column(
        "check_name", Enum(ReconciliationCheck, name="reconciliation_check", native_enum=False, length=40)
    )
    # The organisation the finding belongs to (NULL for a platform-wide currency total).
    organization_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    wallet_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    expected: Mapped[int | None] = mapped_column(nullable=True)
    actual: Mapped[int | None] = mapped_column(nullable=True)
    # actual - expected, in minor units (or versions, for VERSION_* checks).
    difference: Mapped[int | None] = mapped_column(nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)


class ReconciliationMark(Base):
    """The last state of a wallet a run proved consistent: incremental runs check only what follows."""

    __tablename__ = "reconciliation_marks"

    # No foreign key: runs read under REPEATABLE READ, and a key-share lock on a wallet a settlement
    # just updated would fail them for nothing. Wallets are never deleted.
    wallet_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    version: Mapped[int]
    balance: Mapped[int]
    checked_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())


class ReconciliationCursor(Base):
    """Where incremental transaction checks resume: the completed_at covered by the last clean run."""

    __tablename__ = "reconciliation_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    completed_through: Mapped[datetime]


# Incremental runs re-check transactions finalised since the last clean run; keep that lookup indexed.
# PENDING intents (no completed_at yet) stay out of it (migration 0006).
Index(
    "ix_transactions_completed_at",
    Transaction.completed_at,
    postgresql_where=Transaction.completed_at.is_not(None),
)
