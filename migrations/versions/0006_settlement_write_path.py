"""A cheaper write path for settlement batches.

Settling an intent rewrites its transactions row (status and completed_at are indexed, so the new
version gets an entry in every index whose predicate it matches) and its two wallets' rows.

- transactions.parent_transaction_id, settlement_batch_id and completed_at are NULL on many rows
  (the first two on nearly all, completed_at on every PENDING intent), and every query of them
  looks for a value: their indexes keep only the rows that have one (the unique index on
  parent_transaction_id still allows one obligation per transfer). Without an index on
  `completed_at IS NULL`, a lookup of named intents that checks it goes through the primary key.
- wallets leave room on each page, so a balance update (no indexed column changes) stays a
  heap-only update instead of adding an entry to each of the wallet indexes.
- ledger_entries.id has a server default, so the batch's COPY need not send one per entry.

Revision ID: 0006
Revises: 0005
Depends on: 0003 (transactions.completed_at's index)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = ("0003",)

# index: (column, unique)
NOT_NULL = {
    "uq_transactions_parent_transaction_id": ("parent_transaction_id", True),
    "ix_transactions_settlement_batch_id": ("settlement_batch_id", False),
    "ix_transactions_completed_at": ("completed_at", False),
}
WALLETS_FILLFACTOR = 70


def upgrade() -> None:
    for name, (column, unique) in NOT_NULL.items():
        op.drop_index(name, table_name="transactions")
        op.create_index(
            name, "transactions", [column], unique=unique, postgresql_where=sa.text(f"{column} IS NOT NULL")
        )
    op.execute(f"ALTER TABLE wallets SET (fillfactor = {WALLETS_FILLFACTOR})")
    op.alter_column("ledger_entries", "id", server_default=sa.text("gen_random_uuid()"))


def downgrade() -> None:
    op.alter_column("ledger_entries", "id", server_default=None)
    op.execute("ALTER TABLE wallets RESET (fillfactor)")
    for name, (column, unique) in NOT_NULL.items():
        op.drop_index(name, table_name="transactions")
        op.create_index(name, "transactions", [column], unique=unique)
