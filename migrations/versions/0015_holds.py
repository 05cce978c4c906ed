"""Holds (two-phase transfers) and the three balances.

wallets.held_amount: what open holds reserve (available_balance = balance - held_amount), never
below zero nor, on a user wallet, above the balance. holds: one row per hold. transactions.hold_id:
the hold a CAPTURE takes from.

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UUID = postgresql.UUID(as_uuid=True)
TYPES_BEFORE = ("TRANSFER", "DEPOSIT", "WITHDRAWAL", "SETTLEMENT", "CLEARING")
TYPES = (*TYPES_BEFORE, "HOLD", "CAPTURE")
HOLD_STATUSES = ("PENDING", "HELD", "CAPTURED", "VOIDED", "EXPIRED", "FAILED")

CHECKS_BEFORE = (
    "BALANCE_MISMATCH",
    "VERSION_MISMATCH",
    "BALANCE_CHAIN_BROKEN",
    "VERSION_GAP",
    "TRANSACTION_UNBALANCED",
    "ENTRIES_ON_UNPOSTED_TRANSACTION",
    "CURRENCY_NOT_ZERO",
    "CLEARING_BALANCE_MISMATCH",
)
CHECKS = (*CHECKS_BEFORE, "HELD_MISMATCH")


def _replace_check_names(values: tuple[str, ...]) -> None:
    allowed = ", ".join(f"'{value}'" for value in values)
    name = op.f("ck_reconciliation_findings_check_name_allowed")
    op.drop_constraint(name, "reconciliation_findings", type_="check")
    op.create_check_constraint(name, "reconciliation_findings", f"check_name IN ({allowed})")


def _replace_type_check(values: tuple[str, ...]) -> None:
    allowed = ", ".join(f"'{value}'" for value in values)
    op.drop_constraint(op.f("ck_transactions_type_allowed"), "transactions", type_="check")
    op.create_check_constraint(op.f("ck_transactions_type_allowed"), "transactions", f"type IN ({allowed})")


def upgrade() -> None:
    op.add_column("wallets", sa.Column("held_amount", sa.BigInteger(), server_default="0", nullable=False))
    op.create_check_constraint("held_non_negative", "wallets", "held_amount >= 0")
    op.create_check_constraint("held_within_balance", "wallets", "held_amount <= balance OR type = 'SYSTEM'")
    op.create_index("ix_wallets_held", "wallets", ["id"], postgresql_where=sa.text("held_amount <> 0"))
    op.create_table(
        "holds",
        sa.Column("id", _UUID, nullable=False),
        sa.Column("organization_id", _UUID, nullable=False),
        sa.Column("created_by", _UUID, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("source_wallet_id", _UUID, nullable=False),
        sa.Column("destination_wallet_id", _UUID, nullable=False),
        sa.Column("captured_amount", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reserved_amount", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("final_capture_id", _UUID, nullable=True),
        sa.Column("expires_in", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("failure_reason", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            f"status IN ({', '.join(repr(s) for s in HOLD_STATUSES)})", name=op.f("ck_holds_status_allowed")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_holds_amount_positive")),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_holds_currency_iso4217")),
        sa.CheckConstraint("captured_amount >= 0 AND reserved_amount >= 0", name=op.f("ck_holds_parts_non_negative")),
        sa.CheckConstraint("captured_amount + reserved_amount <= amount", name=op.f("ck_holds_captures_within_hold")),
        sa.CheckConstraint(
            "(status IN ('PENDING', 'HELD')) = (ended_at IS NULL)", name=op.f("ck_holds_ended_at_when_final")
        ),
        sa.CheckConstraint(
            "(status = 'FAILED') = (failure_reason IS NOT NULL)", name=op.f("ck_holds_failure_reason_when_failed")
        ),
        sa.CheckConstraint("source_wallet_id <> destination_wallet_id", name=op.f("ck_holds_distinct_wallets")),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_holds_organization_id_organizations")
        ),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_holds_created_by_users")),
        sa.ForeignKeyConstraint(["source_wallet_id"], ["wallets.id"], name=op.f("fk_holds_source_wallet_id_wallets")),
        sa.ForeignKeyConstraint(
            ["destination_wallet_id"], ["wallets.id"], name=op.f("fk_holds_destination_wallet_id_wallets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
    )
    op.create_index("ix_holds_org_created", "holds", ["organization_id", "created_at", "id"])
    op.create_index("ix_holds_source_created", "holds", ["source_wallet_id", "created_at"])
    op.create_index("ix_holds_destination_created", "holds", ["destination_wallet_id", "created_at"])
    op.create_index("ix_holds_held_expires_at", "holds", ["expires_at"], postgresql_where=sa.text("status = 'HELD'"))
    op.create_index("ix_holds_held_source", "holds", ["source_wallet_id"], postgresql_where=sa.text("status = 'HELD'"))
    op.create_index(
        "ix_holds_held_destination", "holds", ["destination_wallet_id"], postgresql_where=sa.text("status = 'HELD'")
    )
    _replace_type_check(TYPES)
    _replace_check_names(CHECKS)
    op.add_column("transactions", sa.Column("hold_id", _UUID, nullable=True))
    op.create_foreign_key(op.f("fk_transactions_hold_id_holds"), "transactions", "holds", ["hold_id"], ["id"])
    op.create_index(
        "ix_transactions_hold_id", "transactions", ["hold_id"], postgresql_where=sa.text("hold_id IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index("ix_transactions_hold_id", table_name="transactions")
    op.drop_constraint(op.f("fk_transactions_hold_id_holds"), "transactions", type_="foreignkey")
    op.drop_column("transactions", "hold_id")
    _replace_type_check(TYPES_BEFORE)
    _replace_check_names(CHECKS_BEFORE)
    op.drop_table("holds")
    op.drop_index("ix_wallets_held", table_name="wallets")
    op.drop_constraint("ck_wallets_held_within_balance", "wallets", type_="check")
    op.drop_constraint("ck_wallets_held_non_negative", "wallets", type_="check")
    op.drop_column("wallets", "held_amount")
