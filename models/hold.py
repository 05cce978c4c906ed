"""Holds: two-phase transfers. Funds reserved on a source wallet now, captured (in parts) later."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Enum, ForeignKey, Index, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, uuid_pk
from models.transaction import DESCRIPTION_LENGTH_MAX

# Bounds on `expires_in` (seconds): at least one second, at most 30 days; a week when not given.
HOLD_EXPIRES_IN_SECONDS_MIN = 1
HOLD_EXPIRES_IN_SECONDS_MAX = 30 * 24 * 3600
HOLD_EXPIRES_IN_SECONDS_DEFAULT = 7 * 24 * 3600


class HoldStatus(enum.StrEnum):
    PENDING = "PENDING"  # accepted; the engine has not reserved the funds yet
    HELD = "HELD"  # reserved: counted in the source wallet's held_amount
    CAPTURED = "CAPTURED"  # used up, or ended by a final capture
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"  # never held (INSUFFICIENT_FUNDS, WALLET_NOT_ACTIVE, ...)

    @property
    def is_open(self) -> bool:
        return self in (HoldStatus.PENDING, HoldStatus.HELD)


class Hold(Base):
    """One hold. Its id is the id of the HOLD transaction that the settlement engine settles to
    reserve the funds (same per-wallet order as every other debit); its captures are CAPTURE
    transactions naming it in `hold_id`.

    While HELD, the source wallet's held_amount counts `amount - captured_amount` of it (what
    reconciliation checks). `reserved_amount` is what captures accepted but not yet settled will
    take: intake refuses a capture beyond `amount - captured_amount - reserved_amount`, under the
    hold's row lock, so captures never exceed the hold even when they race.
    """

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso4217"),
        CheckConstraint("captured_amount >= 0 AND reserved_amount >= 0", name="parts_non_negative"),
        CheckConstraint("captured_amount + reserved_amount <= amount", name="captures_within_hold"),
        CheckConstraint("(status IN ('PENDING', 'HELD')) = (ended_at IS NULL)", name="ended_at_when_final"),
        CheckConstraint("(status = 'FAILED') = (failure_reason IS NOT NULL)", name="failure_reason_when_failed"),
        CheckConstraint("source_wallet_id <> destination_wallet_id", name="distinct_wallets"),
        Index("ix_holds_org_created", "organization_id", "created_at", "id"),
        Index("ix_holds_source_created", "source_wallet_id", "created_at"),
        Index("ix_holds_destination_created", "destination_wallet_id", "created_at"),
        # What the expiry sweeper reads, and what reconciliation sums per wallet: open holds only.
        Index("ix_holds_held_expires_at", "expires_at", postgresql_where=text("status = 'HELD'")),
        Index("ix_holds_held_source", "source_wallet_id", postgresql_where=text("status = 'HELD'")),
        Index("ix_holds_held_destination", "destination_wallet_id", postgresql_where=text("status = 'HELD'")),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    status: Mapped[HoldStatus] = mapped_column(
        Enum(HoldStatus, name="hold_status", native_enum=False, length=16), default=HoldStatus.PENDING
    )
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    source_wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id"))
    destination_wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id"))
    captured_amount: Mapped[int] = mapped_column(default=0, server_default="0")
    reserved_amount: Mapped[int] = mapped_column(default=0, server_default="0")
    # The capture accepted with `final: true`: when it settles the hold ends CAPTURED, the rest released.
    final_capture_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    expires_in: Mapped[int]
    # Set when the hold becomes HELD: expires_in seconds from then.
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    description: Mapped[str | None] = mapped_column(String(DESCRIPTION_LENGTH_MAX), nullable=True)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB, nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)

    @property
    def remaining_amount(self) -> int:
        return self.amount - self.captured_amount if self.status in (HoldStatus.PENDING, HoldStatus.HELD) else 0
