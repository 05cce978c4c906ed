"""Time-ordered ids (UUIDv7) for rows that SQL creates itself, see models/ids.py.

`uuid_v7()` takes a random version 4 UUID, overwrites its first 48 bits with the Unix time in
milliseconds and its version nibble with 7 (RFC 9562 layout). A plain SQL function, so Postgres
inlines it into the statements that call it. ledger_entries.id defaults to it.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Bits 52 and 53 (counted from the low bit of the first byte) turn version 4's nibble 0100 into 0111.
UUID_V7 = """
CREATE OR REPLACE FUNCTION uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$
"""


def upgrade() -> None:
    op.execute(UUID_V7)
    op.alter_column("ledger_entries", "id", server_default=sa.text("uuid_v7()"))


def downgrade() -> None:
    op.alter_column("ledger_entries", "id", server_default=sa.text("gen_random_uuid()"))
    op.execute("DROP FUNCTION uuid_v7()")
