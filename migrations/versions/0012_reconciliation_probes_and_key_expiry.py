"""Reconciliation that keeps seeing drift, and idempotency keys that expire.

- `ledger_entries.created_at` gets a BRIN index: incremental runs look for entries written since the
  last run (a wallet whose row was not updated with them, an intent that never completed). The table
  is append-only and written in time order, so a BRIN index answers that from a few block ranges,
  and costs the settlement path next to nothing (a B-tree would be updated on every entry).
  `autosummarize`: autovacuum summarizes each block range once it is full, so the ranges a probe
  cannot skip are only the newest ones.
- `reconciliation_runs.capped_at_wallet_id`: where a run's wallet checks stopped at their findings
  cap. The wallets after it keep their marks, and the next run of the same scope starts after it.
- `reconciliation_findings.check_name` allows `CLEARING_BALANCE_MISMATCH`.
- `idempotency_keys.created_at` gets a B-tree index: beat purges keys past their time to live,
  oldest first, a bounded batch at a time.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECKS_BEFORE = (
    "BALANCE_MISMATCH",
    "VERSION_MISMATCH",
    "BALANCE_CHAIN_BROKEN",
    "VERSION_GAP",
    "TRANSACTION_UNBALANCED",
    "ENTRIES_ON_UNPOSTED_TRANSACTION",
    "CURRENCY_NOT_ZERO",
)
CHECKS_AFTER = (*CHECKS_BEFORE, "CLEARING_BALANCE_MISMATCH")


def _replace_check_names(values: tuple[str, ...]) -> None:
    allowed = ", ".join(f"'{value}'" for value in values)
    name = op.f("ck_reconciliation_findings_check_name_allowed")
    op.drop_constraint(name, "reconciliation_findings", type_="check")
    op.create_check_constraint(name, "reconciliation_findings", f"check_name IN ({allowed})")


def upgrade() -> None:
    op.create_index(
        "ix_ledger_entries_created_at_brin",
        "ledger_entries",
        ["created_at"],
        postgresql_using="brin",
        postgresql_with={"autosummarize": "on"},
    )
    op.add_column("reconciliation_runs", sa.Column("capped_at_wallet_id", sa.UUID(), nullable=True))
    _replace_check_names(CHECKS_AFTER)
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    _replace_check_names(CHECKS_BEFORE)
    op.drop_column("reconciliation_runs", "capped_at_wallet_id")
    op.drop_index("ix_ledger_entries_created_at_brin", table_name="ledger_entries", postgresql_using="brin")
