"""Balance monitors: a wallet's available balance watched against a threshold.

`in_condition` is the state the monitor last announced. Whatever moves the wallet's balance or held
amount updates it in the same transaction, under the wallet's row lock, and writes a
`balance_monitor.triggered` or `.resolved` event for each crossing (ledger/monitors.py).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Enum, ForeignKey, Index, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, uuid_pk

# A wallet carries at most this many monitors: each one is evaluated on every move of its balance.
MONITORS_PER_WALLET_MAX = 20


class MonitorCondition(enum.StrEnum):
    AVAILABLE_BALANCE_BELOW = "available_balance_below"
    AVAILABLE_BALANCE_ABOVE = "available_balance_above"


class BalanceMonitor(Base):
    __tablename__ = "balance_monitors"
    __table_args__ = (
        # The engine's lookup (monitors on the wallets a batch touched) and the newest-first list.
        Index("ix_balance_monitors_wallet_newest", "wallet_id", "created_at", "id"),
        CheckConstraint("threshold >= 0", name="threshold_not_negative"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id"))
    # The wallet's organisation (never changes): whom the events concern.
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    condition: Mapped[MonitorCondition] = mapped_column(
        Enum(
            MonitorCondition,
            name="balance_monitor_condition",
            native_enum=False,
            length=32,
            values_callable=lambda kinds: [k.value for k in kinds],
        )
    )
    threshold: Mapped[int] = mapped_column(BigInteger)
    in_condition: Mapped[bool] = mapped_column(server_default=text("false"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = created_at_column()
