"""Risk controls: each organisation's limits on money leaving its wallets (enforced by ledger/settlement/risk.py).

One row per organisation; no row, or a NULL limit, means "no limit". SYSTEM wallets are exempt.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, func
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

RISK_LIMIT_NAMES = (
    "transfer_amount_max",
    "daily_outgoing_max_per_wallet",
    "transfers_per_minute_max_per_wallet",
)


class RiskLimits(Base):
    __tablename__ = "risk_limits"
    __table_args__ = (
        CheckConstraint("transfer_amount_max > 0", name="transfer_amount_max_positive"),
        CheckConstraint("daily_outgoing_max_per_wallet > 0", name="daily_outgoing_max_positive"),
        CheckConstraint("transfers_per_minute_max_per_wallet > 0", name="transfers_per_minute_max_positive"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    # Largest single outgoing transfer or withdrawal, in minor units.
    transfer_amount_max: Mapped[int | None] = mapped_column(nullable=True)
    # Most a wallet may send in one UTC day (COMPLETED outgoing transfers and withdrawals), minor units.
    daily_outgoing_max_per_wallet: Mapped[int | None] = mapped_column(nullable=True)
    # Most outgoing transfers and withdrawals a wallet may complete in any 60 seconds.
    transfers_per_minute_max_per_wallet: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), nullable=True)
