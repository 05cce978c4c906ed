"""The bench's organisation, owner and wallets: `wallets` funded PRIMARY wallets and one hot wallet.

Funding goes through the engine itself (deposits from the treasury), so every balance the bench
starts from is backed by ledger entries, as in production.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg

from ledger.identity import signup
from ledger.settlement.posting import settle_transfers
from ledger.wallets import get_or_create_system_wallet
from models.db import session_factory

BENCH_PASSWORD = "bench-password-not-secret"
FUNDING_MINOR = 10**12  # far more than any run moves: bench transfers never fail for funds
SETTLE_CHUNK = 1000


@dataclass(frozen=True)
class Dataset:
    organization_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    wallets: list[uuid.UUID]
    hot_wallet: uuid.UUID


def _create_owner() -> tuple[uuid.UUID, uuid.UUID, str]:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    with session_factory().begin() as session:
        user, organization = signup(
            session, email=email, password=BENCH_PASSWORD, full_name="Bench", organization_name="Bench"
        )
        get_or_create_system_wallet(session, organization.id, "INR")
        return user.id, organization.id, email


def _insert_wallets(connection: psycopg.Connection, organization_id: uuid.UUID, user_id: uuid.UUID, count: int) -> None:
    connection.execute(
        """
        INSERT INTO wallets (id, organization_id, owner_id, type, currency, name)
        SELECT gen_random_uuid(), %(org)s, %(user)s, 'PRIMARY', 'INR', 'bench-' || n
          FROM generate_series(1, %(count)s) AS n
        """,
        {"org": organization_id, "user": user_id, "count": count},
    )
    connection.execute(
        "INSERT INTO wallets (id, organization_id, owner_id, type, currency, name)"
        " VALUES (gen_random_uuid(), %(org)s, %(user)s, 'PRIMARY', 'INR', 'bench-hot')",
        {"org": organization_id, "user": user_id},
    )


def _deposit_intents(connection: psycopg.Connection, organization_id: uuid.UUID, user_id: uuid.UUID) -> list[uuid.UUID]:
    rows = connection.execute(
        """
        INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                                  source_wallet_id, destination_wallet_id, description)
        SELECT gen_random_uuid(), %(org)s, %(user)s, 'DEPOSIT', 'PENDING', %(amount)s, 'INR',
               t.id, w.id, 'bench-funding'
          FROM wallets w
          JOIN wallets t ON t.organization_id = w.organization_id AND t.type = 'SYSTEM' AND t.name = 'treasury'
         WHERE w.organization_id = %(org)s AND w.type = 'PRIMARY'
        RETURNING id
        """,
        {"org": organization_id, "user": user_id, "amount": FUNDING_MINOR},
    ).fetchall()
    return [row[0] for row in rows]


def create(dsn: str, wallet_count: int) -> Dataset:
    user_id, organization_id, email = _create_owner()
    with psycopg.connect(dsn) as connection:
        _insert_wallets(connection, organization_id, user_id, wallet_count)
        deposits = _deposit_intents(connection, organization_id, user_id)
        connection.commit()
        wallets = [
            row[0]
            for row in connection.execute(
                "SELECT id FROM wallets WHERE organization_id = %s AND name LIKE 'bench-%%' AND name <> 'bench-hot'"
                " ORDER BY id",
                (organization_id,),
            )
        ]
        hot = connection.execute(
            "SELECT id FROM wallets WHERE organization_id = %s AND name = 'bench-hot'", (organization_id,)
        ).fetchone()
    assert hot is not None
    # In the order they were accepted: all in one statement, so by id. Intents that debit one wallet
    # (here the treasury) settle first accepted first; a chunk in any other order waits behind the
    # older deposits outside it (ledger/settlement/order.py) and settles nothing.
    deposits.sort()
    for start in range(0, len(deposits), SETTLE_CHUNK):
        with session_factory().begin() as session:
            settle_transfers(session, deposits[start : start + SETTLE_CHUNK])
    with psycopg.connect(dsn) as connection:
        unfunded = connection.execute(
            "SELECT count(*) FROM transactions WHERE id = ANY(%s) AND status <> 'COMPLETED'", (deposits,)
        ).fetchone()
    assert unfunded is not None and unfunded[0] == 0, (
        f"{unfunded[0] if unfunded else '?'} funding deposits did not complete"
    )
    return Dataset(organization_id, user_id, email, wallets, hot[0])
