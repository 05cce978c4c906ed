"""Cross-organisation settlement batches: one row per cut-off, one leg per organisation and currency."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Enum, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, uuid_pk


class BatchStatus(enum.StrEnum):
    # A batch is written in the one database transaction that posts it, so nobody ever sees it half
    # done: a crash leaves no row at all. COMPLETED is the only state a reader can observe.
    COMPLETED = "COMPLETED"


class BatchTrigger(enum.StrEnum):
    SCHEDULE = "SCHEDULE"
    OPERATOR = "OPERATOR"
    CLI = "CLI"


class LegDirection(enum.StrEnum):
    """What the organisation does at settlement: pays its net debt, receives its net claim, or neither."""

    PAY = "PAY"
    RECEIVE = "RECEIVE"
    FLAT = "FLAT"


class SettlementBatch(Base):
    __tablename__ = "settlement_batches"
    __table_args__ = (
        # One batch per cut-off: the same window is never settled twice.
        UniqueConstraint("cut_off", name="uq_settlement_batches_cut_off"),
        CheckConstraint("window_start IS NULL OR window_start <= cut_off", name="window_ordered"),
        CheckConstraint("transfer_count >= 0", name="transfer_count_non_negative"),
        Index("ix_settlement_batches_created", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    status: Mapped[BatchStatus] = mapped_column(
        Enum(BatchStatus, name="settlement_batch_status", native_enum=False, length=16)
    )
    trigger: Mapped[BatchTrigger] = mapped_column(
        Enum(BatchTrigger, name="settlement_batch_trigger", native_enum=False, length=16)
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    # The window is (window_start, cut_off]: window_start is the previous batch's cut-off (None for
    # the first). A transfer that completed before window_start but committed after that batch read
    # its obligations is still unsettled, and this batch takes it too: nothing falls between batches.
    window_start: Mapped[datetime | None] = mapped_column(nullable=True)
    cut_off: Mapped[datetime]
    transfer_count: Mapped[int]
    # Per currency: gross obligations, what actually moved after netting, and how many transfers.
    totals: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    # Organisations the batch left out, per currency, because their treasury or clearing wallet could
    # not take a posting: {organization_id, currency, reason, wallet_id, wallet_status,
    # obligation_count, obligation_amount}. Their obligations stay unsettled for a later batch.
    skipped: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"), default=list)
    created_at: Mapped[datetime] = created_at_column()


class SettlementLeg(Base):
    """One organisation's net position in one currency for a batch, and the posting that settled it."""

    __tablename__ = "settlement_legs"
    __table_args__ = (
        UniqueConstraint("batch_id", "organization_id", "currency", name="uq_settlement_legs_batch_org_currency"),
        CheckConstraint("sent_amount >= 0 AND received_amount >= 0", name="gross_non_negative"),
        CheckConstraint("net_position = sent_amount - received_amount", name="net_is_sent_less_received"),
        CheckConstraint("(net_position = 0) = (transaction_id IS NULL)", name="posting_when_not_flat"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso4217"),
        Index("ix_settlement_legs_organization", "organization_id", "batch_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("settlement_batches.id"))
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    currency: Mapped[str] = mapped_column(String(3))
    # Gross amounts the organisation's users sent to / received from other organisations in the batch.
    sent_amount: Mapped[int]
    received_amount: Mapped[int]
    # sent - received: positive, the organisation owed the others and pays; negative, it receives.
    # The leg moves exactly this amount from the clearing wallet into the treasury wallet, so the
    # treasury balance changes by net_position and the clearing wallet gives up what the batch owed.
    net_position: Mapped[int]
    direction: Mapped[LegDirection] = mapped_column(
        Enum(LegDirection, name="settlement_leg_direction", native_enum=False, length=8)
    )
    transfer_count: Mapped[int]
    treasury_wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id"))
    clearing_wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id"))
    # The SETTLEMENT transaction that posted the leg; None when the position netted to zero.
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transactions.id"), nullable=True)
    created_at: Mapped[datetime] = created_at_column()
