"""Transactions: the durable intents the API accepts and the workers settle, and idempotency keys."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Enum, ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, uuid_pk


class TransactionType(enum.StrEnum):
    TRANSFER = "TRANSFER"
    DEPOSIT = "DEPOSIT"
    WITHDRAWAL = "WITHDRAWAL"
    SETTLEMENT = "SETTLEMENT"
    # The obligation a cross-organisation transfer leaves between the two organisations' clearing
    # wallets, posted with the transfer (see ledger/clearing/routing.py).
    CLEARING = "CLEARING"
    # Money sent back along a COMPLETED transfer, from its destination to its source: `refund_of`
    # names the original (ledger/intents/refunds.py).
    REFUND = "REFUND"
    # Reserving a hold's funds (models/hold.py): settled by the engine in its wallet's order, posts
    # no entry; COMPLETED means the hold is HELD. Its id is the hold's id.
    HOLD = "HOLD"
    # Taking part or all of a hold: one DEBIT and one CREDIT, like a transfer; `hold_id` names the hold.
    CAPTURE = "CAPTURE"


class TransactionStatus(enum.StrEnum):
    PENDING = "PENDING"
    # A fraud rule stopped it (ledger/settlement/review.py): its amount is held on the source until an
    # OWNER/ADMIN other than its creator approves or rejects it, or the review window ends.
    IN_REVIEW = "IN_REVIEW"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self not in (TransactionStatus.PENDING, TransactionStatus.IN_REVIEW)


class ReviewDecision(enum.StrEnum):
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class FailureReason(enum.StrEnum):
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    WALLET_NOT_ACTIVE = "WALLET_NOT_ACTIVE"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    # Over one of the source organisation's risk limits (models/risk.py, ledger/settlement/risk.py).
    RISK_LIMIT = "RISK_LIMIT"
    # A SYSTEM wallet (treasury, clearing) where only a deposit or withdrawal may name one: an intent
    # that got past intake (ledger/access.py) with one is refused here too.
    SYSTEM_WALLET = "SYSTEM_WALLET"
    # A capture settled after its hold ended (voided, captured to the end) or expired.
    HOLD_NOT_ACTIVE = "HOLD_NOT_ACTIVE"
    HOLD_EXPIRED = "HOLD_EXPIRED"
    # A transfer in review (ledger/intents/review.py): rejected by a reviewer, or not decided in time.
    REJECTED_IN_REVIEW = "REJECTED_IN_REVIEW"
    REVIEW_EXPIRED = "REVIEW_EXPIRED"


DESCRIPTION_LENGTH_MAX = 500
PARK_REASON_LENGTH_MAX = 2000
IDEMPOTENCY_KEY_LENGTH_MAX = 255
# How many refunds one transaction may have, failed ones included: its `refunds` list stays small.
REFUNDS_PER_TRANSACTION_MAX = 100
REVIEW_NOTE_LENGTH_MAX = 1000


class Transaction(Base):
    __tablename__ = "transactions"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("source_wallet_id <> destination_wallet_id", name="distinct_wallets"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso4217"),
        # A final status always has its completion time, a pending (or in review) one never.
        CheckConstraint(
            "(status IN ('PENDING', 'IN_REVIEW')) = (completed_at IS NULL)", name="completed_at_when_final"
        ),
        CheckConstraint("status <> 'IN_REVIEW' OR review_started_at IS NOT NULL", name="in_review_has_start"),
        CheckConstraint("(status = 'FAILED') = (failure_reason IS NOT NULL)", name="failure_reason_when_failed"),
        # Refunds together never exceed the original (ledger/intents/refunds.py reserves under its row lock).
        CheckConstraint("refunded_amount >= 0 AND refunded_amount <= amount", name="refunded_within_amount"),
        CheckConstraint("(type = 'REFUND') = (refund_of IS NOT NULL)", name="refund_has_original"),
        CheckConstraint(f"cardinality(refunds) <= {REFUNDS_PER_TRANSACTION_MAX}", name="refunds_bounded"),
        # The sweep and the batch engine look for old PENDING intents; keep that index small.
        Index("ix_transactions_pending", "created_at", "id", postgresql_where=text("status = 'PENDING'")),
        # One organisation's PENDING intents, oldest first: the drain claims one organisation at a time.
        Index(
            "ix_transactions_pending_organization",
            "organization_id",
            "created_at",
            "id",
            postgresql_where=text("status = 'PENDING'"),
        ),
        # The PENDING intents that debit a wallet, oldest first: the per-wallet settle order
        # (ledger/settlement/order.py).
        Index(
            "ix_transactions_pending_source",
            "source_wallet_id",
            "created_at",
            "id",
            postgresql_where=text("status = 'PENDING'"),
        ),
        Index(
            "ix_transactions_parked", "parked_at", postgresql_where=text("parked_at IS NOT NULL AND status = 'PENDING'")
        ),
        Index("ix_transactions_org_created", "organization_id", "created_at", "id"),
        # What a user may see includes what they created (ledger/intents/transfers.py visible_transactions):
        # without it, that OR of four conditions read the whole table (make bench console phase, migration 0020).
        Index("ix_transactions_created_by", "created_by", "created_at"),
        Index("ix_transactions_source_created", "source_wallet_id", "created_at"),
        Index("ix_transactions_destination_created", "destination_wallet_id", "created_at"),
        # Cross-organisation settlement: obligations not yet in a batch, and a batch's transactions.
        Index(
            "ix_transactions_unsettled_clearing",
            "completed_at",
            postgresql_where=text("type = 'CLEARING' AND status = 'COMPLETED' AND settlement_batch_id IS NULL"),
        ),
        # Both columns are NULL on nearly every row and only ever looked up by value (migration 0006).
        Index(
            "ix_transactions_settlement_batch_id",
            "settlement_batch_id",
            postgresql_where=text("settlement_batch_id IS NOT NULL"),
        ),
        # The review queue, per organisation, newest first, and the expiry sweeper's oldest first.
        Index(
            "ix_transactions_in_review",
            "organization_id",
            "created_at",
            "id",
            postgresql_where=text("status = 'IN_REVIEW'"),
        ),
        Index("ix_transactions_review_started", "review_started_at", postgresql_where=text("status = 'IN_REVIEW'")),
        Index("ix_transactions_hold_id", "hold_id", postgresql_where=text("hold_id IS NOT NULL")),
        Index(
            "uq_transactions_parent_transaction_id",
            "parent_transaction_id",
            unique=True,
            postgresql_where=text("parent_transaction_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    # The organisation that initiated the intent. This reference and the others every row carries
    # (created_by, the two wallets) are checked once per statement by a trigger, not by a foreign
    # key per row (migration 0008).
    organization_id: Mapped[uuid.UUID]
    created_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    type: Mapped[TransactionType] = mapped_column(
        Enum(TransactionType, name="transaction_type", native_enum=False, length=16)
    )
    status: Mapped[TransactionStatus] = mapped_column(
        Enum(TransactionStatus, name="transaction_status", native_enum=False, length=16),
        default=TransactionStatus.PENDING,
    )
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    source_wallet_id: Mapped[uuid.UUID]
    destination_wallet_id: Mapped[uuid.UUID]
    description: Mapped[str | None] = mapped_column(String(DESCRIPTION_LENGTH_MAX), nullable=True)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(IDEMPOTENCY_KEY_LENGTH_MAX), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = created_at_column()
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The API request that accepted the intent: it follows the intent into its settlement logs and events.
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The transfer a CLEARING obligation accompanies (one obligation per transfer).
    parent_transaction_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transactions.id"), nullable=True)
    # The settlement batch that settled this transaction: a cross-organisation transfer, its CLEARING
    # obligation, and the batch's own SETTLEMENT postings.
    settlement_batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("settlement_batches.id"), nullable=True)
    # Settling this intent alone raised an unexpected error this many times (ledger/settlement/parking.py). At the
    # bound it is parked: still PENDING, with the last error as its reason, passed by every claim.
    settle_failures: Mapped[int] = mapped_column(server_default=text("0"), default=0)
    park_reason: Mapped[str | None] = mapped_column(String(PARK_REASON_LENGTH_MAX), nullable=True)
    parked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # On a REFUND: the transaction it refunds. On a refundable one: the amount its refunds reserve
    # (PENDING and COMPLETED ones; a refund that fails or is cancelled gives its amount back), and
    # every refund made of it, in the order they were accepted.
    refund_of: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transactions.id"), nullable=True)
    refunded_amount: Mapped[int] = mapped_column(server_default=text("0"), default=0)
    refunds: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(UUID(as_uuid=True)), server_default=text("'{}'"), default=list
    )
    # A CAPTURE's hold (models/hold.py).
    hold_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("holds.id"), nullable=True)
    # Fraud review (ledger/settlement/review.py, ledger/intents/review.py): the rules it tripped, when
    # it entered review, and the decision. An APPROVED transfer goes back in line and is never
    # sent to review again.
    review_reasons: Mapped[list[str] | None] = mapped_column(ARRAY(String(64)), nullable=True)
    review_started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    review_decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reviewed_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    review_note: Mapped[str | None] = mapped_column(String(REVIEW_NOTE_LENGTH_MAX), nullable=True)


class IdempotencyKey(Base):
    """One row per (organisation, key): the request it first came with and the transaction it made."""

    __tablename__ = "idempotency_keys"
    # Beat purges keys past their time to live, oldest first (ledger.idempotency.purge_expired_keys).
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    # Checked once per statement by a trigger, not by a foreign key (migration 0008).
    organization_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_LENGTH_MAX), primary_key=True)
    # sha256 of the canonical request (endpoint + body), to tell a retry from a reused key.
    request_hash: Mapped[str] = mapped_column(String(64))
    # Deferred FK: the key row is written first, to claim the key, then the transaction it names.
    transaction_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("transactions.id", deferrable=True, initially="DEFERRED")
    )
    created_at: Mapped[datetime] = created_at_column()
