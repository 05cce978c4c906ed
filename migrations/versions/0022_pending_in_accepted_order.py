"""PENDING intents indexed in accepted order, (created_at, id), not by created_at alone.

A bulk request's items share one created_at; with the time alone in the index, every read in
accepted order (the claim, the per-wallet order check) sorted the whole tie, and a bound on
(created_at, id) could not be an index condition. See ledger/settlement/order.py.

Revision ID: 0022
Revises: 0021
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING = sa.text("status = 'PENDING'")


def upgrade() -> None:
    op.drop_index("ix_transactions_pending", table_name="transactions", postgresql_where=_PENDING)
    op.create_index("ix_transactions_pending", "transactions", ["created_at", "id"], postgresql_where=_PENDING)


def downgrade() -> None:
    op.drop_index("ix_transactions_pending", table_name="transactions", postgresql_where=_PENDING)
    op.create_index("ix_transactions_pending", "transactions", ["created_at"], postgresql_where=_PENDING)
