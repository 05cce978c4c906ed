"""Refunds: a REFUND transaction names the one it refunds, which counts what its refunds reserve.

- transactions.type allows `REFUND`.
- transactions.refund_of: the refunded transaction (a foreign key: NULL on nearly every row, and a
  NULL costs a foreign key no lookup; see 0008).
- transactions.refunded_amount: what PENDING and COMPLETED refunds of it reserve, never above its
  amount (a check, behind the row lock intake takes).
- transactions.refunds: the ids of its refunds, at most 100.

The type check is rebuilt from the values it allows now, plus `REFUND`, so this migration keeps
whatever types another one added before it.

Revision ID: 0016
Revises: 0015
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TYPE_CHECK = "ck_transactions_type_allowed"
REFUNDS_MAX = 100


def _allowed_types() -> list[str]:
    definition = op.get_bind().scalar(
        sa.text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :name"), {"name": TYPE_CHECK}
    )
    return re.findall(r"'([A-Z_]+)'", definition or "")


def _set_allowed_types(types: list[str]) -> None:
    op.drop_constraint(op.f(TYPE_CHECK), "transactions", type_="check")
    allowed = ", ".join(f"'{t}'" for t in types)
    op.create_check_constraint(op.f(TYPE_CHECK), "transactions", f"type IN ({allowed})")


def upgrade() -> None:
    types = _allowed_types()
    _set_allowed_types([*types, "REFUND"] if "REFUND" not in types else types)
    op.add_column("transactions", sa.Column("refund_of", postgresql.UUID(as_uuid=True), nullable=True))
    op.add_column("transactions", sa.Column("refunded_amount", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column(
        "transactions",
        sa.Column("refunds", postgresql.ARRAY(postgresql.UUID(as_uuid=True)), server_default="{}", nullable=False),
    )
    op.create_foreign_key(
        op.f("fk_transactions_refund_of_transactions"), "transactions", "transactions", ["refund_of"], ["id"]
    )
    op.create_check_constraint(
        op.f("ck_transactions_refunded_within_amount"),
        "transactions",
        "refunded_amount >= 0 AND refunded_amount <= amount",
    )
    op.create_check_constraint(
        op.f("ck_transactions_refund_has_original"), "transactions", "(type = 'REFUND') = (refund_of IS NOT NULL)"
    )
    op.create_check_constraint(
        op.f("ck_transactions_refunds_bounded"), "transactions", f"cardinality(refunds) <= {REFUNDS_MAX}"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_transactions_refunds_bounded"), "transactions", type_="check")
    op.drop_constraint(op.f("ck_transactions_refund_has_original"), "transactions", type_="check")
    op.drop_constraint(op.f("ck_transactions_refunded_within_amount"), "transactions", type_="check")
    op.drop_constraint(op.f("fk_transactions_refund_of_transactions"), "transactions", type_="foreignkey")
    op.drop_column("transactions", "refunds")
    op.drop_column("transactions", "refunded_amount")
    op.drop_column("transactions", "refund_of")
    _set_allowed_types([t for t in _allowed_types() if t != "REFUND"])
