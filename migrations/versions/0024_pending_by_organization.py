"""PENDING intents of one organisation in accepted order: the drain claims one organisation at a time.

The claim (ledger/settlement/posting.py, _LOCK_OLDEST) takes the oldest PENDING intents of the
organisation whose intent is oldest. Through ix_transactions_pending alone, a backlog spread over
many organisations made it read every other organisation's intents (each from the heap, to see its
organisation) to find one batch; this index reads only that organisation's.

Revision ID: 0024
Revises: 0022
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_transactions_pending_organization",
        "transactions",
        ["organization_id", "created_at", "id"],
        postgresql_where=sa.text("status = 'PENDING'"),
    )


def downgrade() -> None:
    op.drop_index("ix_transactions_pending_organization", table_name="transactions")
