"""Fraud review: fraud_rules per organisation, the IN_REVIEW status and a transfer's review columns.

transactions: status IN_REVIEW (not final: no completed_at), review_reasons, review_started_at,
review_decision, reviewed_by, reviewed_at, review_note; partial indexes for the review queue and
the expiry sweeper. Reconciliation's HELD_MISMATCH counts transfers in review as held.

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UUID = postgresql.UUID(as_uuid=True)
STATUSES_BEFORE = ("PENDING", "COMPLETED", "FAILED", "CANCELLED")
STATUSES = (*STATUSES_BEFORE, "IN_REVIEW")
STATUS_CHECK = "ck_transactions_status_allowed"
REVIEW_COLUMNS = ("review_note", "reviewed_at", "reviewed_by", "review_decision", "review_started_at", "review_reasons")
FINAL_CHECK = "ck_transactions_completed_at_when_final"


def _replace_check(name: str, condition: str) -> None:
    op.drop_constraint(op.f(name), "transactions", type_="check")
    op.create_check_constraint(name.removeprefix("ck_transactions_"), "transactions", condition)


def _statuses(values: tuple[str, ...]) -> str:
    return f"status IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "fraud_rules",
        sa.Column("organization_id", _UUID, nullable=False),
        sa.Column("review_amount_over", sa.BigInteger(), nullable=True),
        sa.Column("max_transfers_per_wallet_per_10_minutes", sa.Integer(), nullable=True),
        sa.Column("new_destination_amount_over", sa.BigInteger(), nullable=True),
        sa.Column("amount_over_wallet_p95_factor", sa.Numeric(12, 4), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_by", _UUID, nullable=True),
        sa.CheckConstraint("review_amount_over > 0", name=op.f("ck_fraud_rules_review_amount_over_positive")),
        sa.CheckConstraint(
            "max_transfers_per_wallet_per_10_minutes > 0", name=op.f("ck_fraud_rules_max_transfers_positive")
        ),
        sa.CheckConstraint(
            "new_destination_amount_over > 0", name=op.f("ck_fraud_rules_new_destination_amount_over_positive")
        ),
        sa.CheckConstraint("amount_over_wallet_p95_factor > 0", name=op.f("ck_fraud_rules_p95_factor_positive")),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_fraud_rules_organization_id_organizations")
        ),
        sa.ForeignKeyConstraint(["updated_by"], ["users.id"], name=op.f("fk_fraud_rules_updated_by_users")),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_fraud_rules")),
    )
    op.add_column("transactions", sa.Column("review_reasons", postgresql.ARRAY(sa.String(64)), nullable=True))
    op.add_column("transactions", sa.Column("review_started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("transactions", sa.Column("review_decision", sa.String(16), nullable=True))
    op.add_column("transactions", sa.Column("reviewed_by", _UUID, nullable=True))
    op.add_column("transactions", sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("transactions", sa.Column("review_note", sa.String(1000), nullable=True))
    op.create_foreign_key(op.f("fk_transactions_reviewed_by_users"), "transactions", "users", ["reviewed_by"], ["id"])
    _replace_check(STATUS_CHECK, _statuses(STATUSES))
    _replace_check(FINAL_CHECK, "(status IN ('PENDING', 'IN_REVIEW')) = (completed_at IS NULL)")
    op.create_check_constraint(
        "in_review_has_start", "transactions", "status <> 'IN_REVIEW' OR review_started_at IS NOT NULL"
    )
    op.create_index(
        "ix_transactions_in_review",
        "transactions",
        ["organization_id", "created_at", "id"],
        postgresql_where=sa.text("status = 'IN_REVIEW'"),
    )
    op.create_index(
        "ix_transactions_review_started",
        "transactions",
        ["review_started_at"],
        postgresql_where=sa.text("status = 'IN_REVIEW'"),
    )


def downgrade() -> None:
    op.drop_index("ix_transactions_review_started", table_name="transactions")
    op.drop_index("ix_transactions_in_review", table_name="transactions")
    op.drop_constraint(op.f("ck_transactions_in_review_has_start"), "transactions", type_="check")
    _replace_check(FINAL_CHECK, "(status = 'PENDING') = (completed_at IS NULL)")
    _replace_check(STATUS_CHECK, _statuses(STATUSES_BEFORE))
    op.drop_constraint(op.f("fk_transactions_reviewed_by_users"), "transactions", type_="foreignkey")
    for column in (
        "review_note",
        "reviewed_at",
        "reviewed_by",
        "review_decision",
        "review_started_at",
        "review_reasons",
    ):
        op.drop_column("transactions", column)
    op.drop_table("fraud_rules")
