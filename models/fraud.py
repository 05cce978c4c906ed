"""Fraud rules: each organisation's reasons to stop a transfer for review (enforced by ledger/settlement/review.py).

One row per organisation; no row, or a NULL rule, means the rule is off. A transfer that trips a
rule is not settled: it waits IN_REVIEW, its amount held on the source, for an OWNER/ADMIN's decision.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, Numeric, func
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

FRAUD_RULE_NAMES = (
    "review_amount_over",
    "max_transfers_per_wallet_per_10_minutes",
    "new_destination_amount_over",
    "amount_over_wallet_p95_factor",
)


class FraudRules(Base):
    __tablename__ = "fraud_rules"
    __table_args__ = (
        CheckConstraint("review_amount_over > 0", name="review_amount_over_positive"),
        CheckConstraint("max_transfers_per_wallet_per_10_minutes > 0", name="max_transfers_positive"),
        CheckConstraint("new_destination_amount_over > 0", name="new_destination_amount_over_positive"),
        CheckConstraint("amount_over_wallet_p95_factor > 0", name="p95_factor_positive"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    # A transfer of more than this (minor units) is reviewed.
    review_amount_over: Mapped[int | None] = mapped_column(nullable=True)
    # A wallet's transfers accepted in any 10 minutes (settled or in review) beyond this are reviewed.
    max_transfers_per_wallet_per_10_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A transfer of more than this to a wallet the source never paid before is reviewed.
    new_destination_amount_over: Mapped[int | None] = mapped_column(nullable=True)
    # A transfer of more than this many times the 95th percentile of the source's recent transfers.
    amount_over_wallet_p95_factor: Mapped[float | None] = mapped_column(Numeric(12, 4, asdecimal=False), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), nullable=True)
