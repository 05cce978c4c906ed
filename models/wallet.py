"""Wallets, their cached balance and version, and the users granted access to them."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Enum, ForeignKey, Index, String, UniqueConstraint, func, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, uuid_pk


class WalletType(enum.StrEnum):
    PRIMARY = "PRIMARY"
    BONUS = "BONUS"
    SYSTEM = "SYSTEM"


class WalletStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    LOCKED = "LOCKED"
    CLOSED = "CLOSED"


class MemberRole(enum.StrEnum):
    CONTRIBUTOR = "CONTRIBUTOR"
    VIEWER = "VIEWER"


# Names of the SYSTEM wallets every organisation gets, one per currency, on first use.
TREASURY_WALLET_NAME = "treasury"
CLEARING_WALLET_NAME = "clearing"


class Wallet(Base):
    __tablename__ = "wallets"
    __table_args__ = (
        # Only SYSTEM wallets (treasury, clearing) may go below zero: money enters the system there.
        CheckConstraint("balance >= 0 OR type = 'SYSTEM'", name="balance_non_negative"),
        CheckConstraint("version >= 0", name="version_non_negative"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso4217"),
        CheckConstraint("status <> 'CLOSED' OR balance = 0", name="closed_at_zero"),
        # Holds reserve within the balance: available_balance = balance - held_amount never below 0.
        CheckConstraint("held_amount >= 0", name="held_non_negative"),
        CheckConstraint("held_amount <= balance OR type = 'SYSTEM'", name="held_within_balance"),
        Index(
            "uq_wallets_system_name",
            "organization_id",
            "currency",
            "name",
            unique=True,
            postgresql_where=text("type = 'SYSTEM'"),
        ),
        Index("ix_wallets_owner_id", "owner_id"),
        # The wallets with something held, for reconciliation's HELD_MISMATCH check.
        Index("ix_wallets_held", "id", postgresql_where=text("held_amount <> 0")),
    )
    # Stored with fillfactor 70 (migration 0006): room on each page keeps a balance update heap-only.

    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    type: Mapped[WalletType] = mapped_column(Enum(WalletType, name="wallet_type", native_enum=False, length=16))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[WalletStatus] = mapped_column(
        Enum(WalletStatus, name="wallet_status", native_enum=False, length=16),
        default=WalletStatus.ACTIVE,
        server_default=WalletStatus.ACTIVE.value,
    )
    name: Mapped[str] = mapped_column(String(100))
    # Cached sum of the wallet's ledger entries, in minor units; reconciliation proves it.
    balance: Mapped[int] = mapped_column(default=0, server_default="0")
    # Reserved by open holds (models/hold.py): posted money the wallet may not spend. Kept with the
    # balance under the same row lock; reconciliation proves it against the open holds.
    held_amount: Mapped[int] = mapped_column(default=0, server_default="0")
    # Number of ledger entries posted to the wallet; each entry carries the version it produced.
    version: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())

    @property
    def available_balance(self) -> int:
        return self.balance - self.held_amount


class WalletMember(Base):
    __tablename__ = "wallet_members"
    __table_args__ = (UniqueConstraint("wallet_id", "user_id", name="uq_wallet_members_wallet_user"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[MemberRole] = mapped_column(Enum(MemberRole, name="member_role", native_enum=False, length=16))
    granted_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = created_at_column()
