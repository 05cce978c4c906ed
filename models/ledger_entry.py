"""Ledger entries: the append-only double-entry record. The database refuses UPDATE and DELETE."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Enum, Index, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column
from models.ids import new_id


class Direction(enum.StrEnum):
    DEBIT = "DEBIT"
    CREDIT = "CREDIT"


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("wallet_version > 0", name="wallet_version_positive"),
        # One entry per wallet version: two writers can never both post version N.
        UniqueConstraint("wallet_id", "wallet_version", name="uq_ledger_entries_wallet_version"),
        Index("ix_ledger_entries_transaction_id", "transaction_id"),
        # Incremental reconciliation finds entries written since its last run (migration 0012).
        Index(
            "ix_ledger_entries_created_at_brin",
            "created_at",
            postgresql_using="brin",
            postgresql_with={"autosummarize": "on"},
        ),
    )

    # The database's default too: a settlement batch's COPY leaves the id to it (migrations 0006, 0007).
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id, server_default=text("uuid_v7()"))
    # Both references are checked once per statement (a batch's COPY) by a trigger, not by a
    # foreign key per row (migration 0008).
    wallet_id: Mapped[uuid.UUID]
    transaction_id: Mapped[uuid.UUID]
    direction: Mapped[Direction] = mapped_column(Enum(Direction, name="direction", native_enum=False, length=8))
    amount: Mapped[int]
    balance_after: Mapped[int]
    wallet_version: Mapped[int]
    created_at: Mapped[datetime] = created_at_column()
