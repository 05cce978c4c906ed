"""The batch engine's one-statement paths: draining the oldest intents, events built in SQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from ledger import events
from ledger.posting import settle_oldest_pending, settle_transfers
from models.db import session_factory


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/St_Johns"])
def test_event_timestamps_are_written_as_python_writes_them(zone):
    moments = [
        datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 120000, tzinfo=UTC),
        datetime(2024, 7, 1, 0, 0, 0, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ]
    with session_factory().begin() as session:
        session.execute(text(f"SET LOCAL TimeZone = '{zone}'"))
        for moment in moments:
            written, read = session.execute(
                text(f"SELECT {events._iso('CAST(:at AS timestamptz)')}, CAST(:at AS timestamptz)"), {"at": moment}
            ).one()
            assert written == events._json(read)


def test_the_drain_settles_the_oldest_pending_intents_with_their_events(api, db, unpublished):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    unpublished.start()
    accepted = [api.transfer(owner, source, destination, amount).json["id"] for amount in (600, 300, 200)]

    with session_factory().begin() as session:
        outcome = settle_oldest_pending(session, limit=10_000)
    assert outcome.skipped == 0  # (a worker draining at the same moment may have taken some)

    statuses = [api.wait_final(owner, i)["status"] for i in accepted]
    assert statuses == ["COMPLETED", "COMPLETED", "FAILED"]  # in the order they were accepted
    assert api.wallet(owner, source)["balance"] == 100
    recorded = db.scalar(
        "SELECT array_agg(aggregate_id ORDER BY id) FROM outbox_events"
        " WHERE aggregate_type = 'transaction' AND aggregate_id = ANY(:ids)",
        ids=accepted,
    )
    assert recorded == accepted
    assert db.wallet_drift([source, destination]) == []


def test_named_intents_already_final_are_skipped(api, unpublished):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    unpublished.start()
    transaction_id = uuid.UUID(api.transfer(owner, source, destination, 100).json["id"])
    unknown = uuid.uuid4()

    with session_factory().begin() as session:
        first = settle_transfers(session, [transaction_id, unknown])
    with session_factory().begin() as session:
        again = settle_transfers(session, [transaction_id])

    assert (first.completed, first.skipped) == (1, 1)
    assert (again.completed, again.failed, again.skipped) == (0, 0, 1)


def test_a_batch_claim_probes_the_primary_key_of_a_large_transactions_table(api):
    """1,000 ids against 60,000 rows: with Postgres's default random_page_cost (4) the planner reads
    the whole table for every batch (the issue 3 bench: 5,000 instead of 6,500 intents/s). The
    application's connections price random reads for memory and SSD (settings.db_random_page_cost)."""
    from ledger import posting

    owner = api.signup()
    source, destination = api.create_wallet(owner), api.create_wallet(owner)
    claim = posting._CLAIM_BY_ID.replace("%(ids)b", "%(ids)s")

    def plan(session) -> str:
        rows = session.connection().exec_driver_sql("EXPLAIN " + claim, {"ids": ids}).all()
        return "\n".join(row[0] for row in rows)

    with session_factory().begin() as session:
        ids = (
            session.connection()
            .exec_driver_sql(
                """
            INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                                      source_wallet_id, destination_wallet_id, completed_at)
            SELECT gen_random_uuid(), w.organization_id, w.owner_id, 'TRANSFER', 'COMPLETED', 1, 'INR',
                   %(source)s, %(destination)s, now()
              FROM wallets AS w, generate_series(1, 60000)
             WHERE w.id = %(source)s
            RETURNING id
            """,
                {"source": source, "destination": destination},
            )
            .scalars()
            .all()[:1000]
        )
        session.execute(text("ANALYZE transactions"))
        assert "Seq Scan on transactions" not in plan(session)
        session.execute(text("SET LOCAL random_page_cost = 4"))
        assert "Seq Scan on transactions" in plan(session)  # the trap this setting avoids
        session.rollback()
