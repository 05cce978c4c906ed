"""Per-wallet settle order, and parking an intent that keeps failing.

- ix_transactions_pending_source: the PENDING intents that debit a wallet, oldest first. A batch
  asks it whether an older PENDING intent debits one of its wallets outside the batch (then the
  batch leaves that wallet's intents for a later one: intents that debit a wallet settle in the
  order they were accepted). Partial, so it holds only the backlog and settling an intent adds
  nothing to it.
- transactions.settle_failures, park_reason, parked_at: an intent whose settling raised an
  unexpected error alone (after bisection) counts a failure; at the bound it is parked: it stays
  PENDING with its reason, and claims, drains and the sweep pass it by until an operator acts.
- ix_transactions_parked: the parked intents, for operators and the metrics scrape.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "transactions", sa.Column("settle_failures", sa.Integer(), nullable=False, server_default=sa.text("0"))
    )
    op.add_column("transactions", sa.Column("park_reason", sa.String(length=2000), nullable=True))
    op.add_column("transactions", sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_transactions_pending_source",
        "transactions",
        ["source_wallet_id", "created_at", "id"],
        postgresql_where=sa.text("status = 'PENDING'"),
    )
    op.create_index(
        "ix_transactions_parked",
        "transactions",
        ["parked_at"],
        postgresql_where=sa.text("parked_at IS NOT NULL AND status = 'PENDING'"),
    )


def downgrade() -> None:
    op.drop_index("ix_transactions_parked", table_name="transactions")
    op.drop_index("ix_transactions_pending_source", table_name="transactions")
    op.drop_column("transactions", "parked_at")
    op.drop_column("transactions", "park_reason")
    op.drop_column("transactions", "settle_failures")
