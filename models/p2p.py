"""Peer-to-peer payment requests: a payee asks a payer (in any organisation) for money."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Enum, ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, uuid_pk

NOTE_LENGTH_MAX = 500


class P2PStatus(enum.StrEnum):
    REQUESTED = "REQUESTED"
    SETTLING = "SETTLING"
    SETTLED = "SETTLED"
    FAILED = "FAILED"
    DECLINED = "DECLINED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_P2P_STATUSES


FINAL_P2P_STATUSES = frozenset({P2PStatus.SETTLED, P2PStatus.FAILED, P2PStatus.DECLINED, P2PStatus.CANCELLED})


class P2PRequest(Base):
    __tablename__ = "p2p_requests"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso4217"),
        CheckConstraint("payer_id <> payee_id", name="distinct_parties"),
        # A transaction exists exactly from the moment the payer settles.
        CheckConstraint(
            "(transaction_id IS NOT NULL) = (status IN ('SETTLING', 'SETTLED', 'FAILED'))",
            name="transaction_when_settling",
        ),
        CheckConstraint("(status IN ('REQUESTED', 'SETTLING')) = (resolved_at IS NULL)", name="resolved_at_when_final"),
        Index("ix_p2p_requests_payer_created", "payer_id", "created_at", "id"),
        Index("ix_p2p_requests_payee_created", "payee_id", "created_at", "id"),
        # One request per transaction; the posting engine finds the request by its transaction.
        Index("uq_p2p_requests_transaction_id", "transaction_id", unique=True),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    payee_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    payee_organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    # The email the payee asked. A request to an email nobody has is accepted like any other (so the
    # answer tells the payee nothing about who has an account) and has no payer: nobody can settle
    # or decline it, and the payee may cancel it.
    payer_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    payer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    payer_organization_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organizations.id"), nullable=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    destination_wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id"))
    note: Mapped[str | None] = mapped_column(String(NOTE_LENGTH_MAX), nullable=True)
    status: Mapped[P2PStatus] = mapped_column(Enum(P2PStatus, name="p2p_status", native_enum=False, length=16))
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transactions.id"), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    # When the request reached a final status.
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
