"""Peer-to-peer requests and cross-organisation settlement.

p2p_requests; settlement_batches and settlement_legs; transactions.parent_transaction_id (the
transfer a CLEARING obligation accompanies) and transactions.settlement_batch_id; the CLEARING
transaction type.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRANSACTION_TYPES_BEFORE = ("TRANSFER", "DEPOSIT", "WITHDRAWAL", "SETTLEMENT")
TRANSACTION_TYPES_AFTER = (*TRANSACTION_TYPES_BEFORE, "CLEARING")
P2P_STATUSES = ("REQUESTED", "SETTLING", "SETTLED", "FAILED", "DECLINED", "CANCELLED")
UNSETTLED_CLEARING = "type = 'CLEARING' AND status = 'COMPLETED' AND settlement_batch_id IS NULL"


def _uuid(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.UUID(), nullable=nullable)


def _timestamp(name: str, nullable: bool = False, default: bool = False) -> sa.Column:
    server_default = sa.text("now()") if default else None
    return sa.Column(name, sa.DateTime(timezone=True), server_default=server_default, nullable=nullable)


def _fk(column: str, table: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def _create_settlement_tables() -> None:
    op.create_table(
        "settlement_batches",
        _uuid("id"),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        _uuid("created_by", nullable=True),
        _timestamp("window_start", nullable=True),
        _timestamp("cut_off"),
        sa.Column("transfer_count", sa.BigInteger(), nullable=False),
        sa.Column("totals", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        _timestamp("created_at", default=True),
        sa.CheckConstraint(
            "window_start IS NULL OR window_start <= cut_off", name=op.f("ck_settlement_batches_window_ordered")
        ),
        sa.CheckConstraint("transfer_count >= 0", name=op.f("ck_settlement_batches_transfer_count_non_negative")),
        sa.CheckConstraint("status IN ('COMPLETED')", name=op.f("ck_settlement_batches_status_allowed")),
        sa.CheckConstraint(
            "trigger IN ('SCHEDULE', 'OPERATOR', 'CLI')", name=op.f("ck_settlement_batches_trigger_allowed")
        ),
        _fk("created_by", "settlement_batches", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_batches")),
        sa.UniqueConstraint("cut_off", name="uq_settlement_batches_cut_off"),
    )
    op.create_index("ix_settlement_batches_created", "settlement_batches", ["created_at", "id"])
    op.create_table(
        "settlement_legs",
        _uuid("id"),
        _uuid("batch_id"),
        _uuid("organization_id"),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("sent_amount", sa.BigInteger(), nullable=False),
        sa.Column("received_amount", sa.BigInteger(), nullable=False),
        sa.Column("net_position", sa.BigInteger(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("transfer_count", sa.BigInteger(), nullable=False),
        _uuid("treasury_wallet_id"),
        _uuid("clearing_wallet_id"),
        _uuid("transaction_id", nullable=True),
        _timestamp("created_at", default=True),
        sa.CheckConstraint(
            "sent_amount >= 0 AND received_amount >= 0", name=op.f("ck_settlement_legs_gross_non_negative")
        ),
        sa.CheckConstraint(
            "net_position = sent_amount - received_amount", name=op.f("ck_settlement_legs_net_is_sent_less_received")
        ),
        sa.CheckConstraint(
            "(net_position = 0) = (transaction_id IS NULL)", name=op.f("ck_settlement_legs_posting_when_not_flat")
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_settlement_legs_currency_iso4217")),
        sa.CheckConstraint(
            "direction IN ('PAY', 'RECEIVE', 'FLAT')", name=op.f("ck_settlement_legs_direction_allowed")
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["settlement_batches.id"], name=op.f("fk_settlement_legs_batch_id_settlement_batches")
        ),
        _fk("organization_id", "settlement_legs", "organizations"),
        _fk("treasury_wallet_id", "settlement_legs", "wallets"),
        _fk("clearing_wallet_id", "settlement_legs", "wallets"),
        _fk("transaction_id", "settlement_legs", "transactions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_legs")),
        sa.UniqueConstraint("batch_id", "organization_id", "currency", name="uq_settlement_legs_batch_org_currency"),
    )
    op.create_index("ix_settlement_legs_organization", "settlement_legs", ["organization_id", "batch_id"])


def _create_p2p_requests() -> None:
    allowed = ", ".join(f"'{status}'" for status in P2P_STATUSES)
    op.create_table(
        "p2p_requests",
        _uuid("id"),
        _uuid("payee_id"),
        _uuid("payee_organization_id"),
        _uuid("payer_id"),
        _uuid("payer_organization_id"),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        _uuid("destination_wallet_id"),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        _uuid("transaction_id", nullable=True),
        sa.Column("failure_reason", sa.String(length=64), nullable=True),
        _timestamp("created_at", default=True),
        _timestamp("updated_at", default=True),
        _timestamp("resolved_at", nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_p2p_requests_amount_positive")),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_p2p_requests_currency_iso4217")),
        sa.CheckConstraint("payer_id <> payee_id", name=op.f("ck_p2p_requests_distinct_parties")),
        sa.CheckConstraint(
            "(transaction_id IS NOT NULL) = (status IN ('SETTLING', 'SETTLED', 'FAILED'))",
            name=op.f("ck_p2p_requests_transaction_when_settling"),
        ),
        sa.CheckConstraint(
            "(status IN ('REQUESTED', 'SETTLING')) = (resolved_at IS NULL)",
            name=op.f("ck_p2p_requests_resolved_at_when_final"),
        ),
        sa.CheckConstraint(f"status IN ({allowed})", name=op.f("ck_p2p_requests_status_allowed")),
        _fk("payee_id", "p2p_requests", "users"),
        _fk("payer_id", "p2p_requests", "users"),
        _fk("payee_organization_id", "p2p_requests", "organizations"),
        _fk("payer_organization_id", "p2p_requests", "organizations"),
        _fk("destination_wallet_id", "p2p_requests", "wallets"),
        _fk("transaction_id", "p2p_requests", "transactions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_p2p_requests")),
    )
    op.create_index("ix_p2p_requests_payer_created", "p2p_requests", ["payer_id", "created_at", "id"])
    op.create_index("ix_p2p_requests_payee_created", "p2p_requests", ["payee_id", "created_at", "id"])
    op.create_index("uq_p2p_requests_transaction_id", "p2p_requests", ["transaction_id"], unique=True)


def _replace_type_check(values: tuple[str, ...]) -> None:
    allowed = ", ".join(f"'{value}'" for value in values)
    op.drop_constraint(op.f("ck_transactions_type_allowed"), "transactions", type_="check")
    op.create_check_constraint(op.f("ck_transactions_type_allowed"), "transactions", f"type IN ({allowed})")


def upgrade() -> None:
    _create_settlement_tables()
    _create_p2p_requests()
    op.add_column("transactions", _uuid("parent_transaction_id", nullable=True))
    op.add_column("transactions", _uuid("settlement_batch_id", nullable=True))
    op.create_foreign_key(
        op.f("fk_transactions_parent_transaction_id_transactions"),
        "transactions",
        "transactions",
        ["parent_transaction_id"],
        ["id"],
    )
    op.create_foreign_key(
        op.f("fk_transactions_settlement_batch_id_settlement_batches"),
        "transactions",
        "settlement_batches",
        ["settlement_batch_id"],
        ["id"],
    )
    op.create_index("uq_transactions_parent_transaction_id", "transactions", ["parent_transaction_id"], unique=True)
    op.create_index("ix_transactions_settlement_batch_id", "transactions", ["settlement_batch_id"])
    op.create_index(
        "ix_transactions_unsettled_clearing",
        "transactions",
        ["completed_at"],
        postgresql_where=sa.text(UNSETTLED_CLEARING),
    )
    # A CLEARING obligation is a transaction of its own: the type check must let it in.
    _replace_type_check(TRANSACTION_TYPES_AFTER)
    # Each obligation is written COMPLETED with its transfer and names it.
    op.create_check_constraint(
        op.f("ck_transactions_clearing_has_parent"),
        "transactions",
        "(type = 'CLEARING') = (parent_transaction_id IS NOT NULL)",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_transactions_clearing_has_parent"), "transactions", type_="check")
    _replace_type_check(TRANSACTION_TYPES_BEFORE)
    op.drop_index(
        "ix_transactions_unsettled_clearing", table_name="transactions", postgresql_where=sa.text(UNSETTLED_CLEARING)
    )
    op.drop_index("ix_transactions_settlement_batch_id", table_name="transactions")
    op.drop_index("uq_transactions_parent_transaction_id", table_name="transactions")
    op.drop_constraint(
        op.f("fk_transactions_settlement_batch_id_settlement_batches"), "transactions", type_="foreignkey"
    )
    op.drop_constraint(op.f("fk_transactions_parent_transaction_id_transactions"), "transactions", type_="foreignkey")
    op.drop_column("transactions", "settlement_batch_id")
    op.drop_column("transactions", "parent_transaction_id")
    op.drop_index("uq_p2p_requests_transaction_id", table_name="p2p_requests")
    op.drop_index("ix_p2p_requests_payee_created", table_name="p2p_requests")
    op.drop_index("ix_p2p_requests_payer_created", table_name="p2p_requests")
    op.drop_table("p2p_requests")
    op.drop_index("ix_settlement_legs_organization", table_name="settlement_legs")
    op.drop_table("settlement_legs")
    op.drop_index("ix_settlement_batches_created", table_name="settlement_batches")
    op.drop_table("settlement_batches")
