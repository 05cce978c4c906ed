"""The batch engine's one-statement paths: draining the oldest intents, events built in SQL."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from ledger.integrity import events
from ledger.settlement.posting import settle_oldest_pending, settle_transfers
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
                text(f"SELECT {events.iso_sql('CAST(:at AS timestamptz)')}, CAST(:at AS timestamptz)"), {"at": moment}
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
    from ledger.settlement import posting

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


def _rows_handled(plan: dict) -> float:
    """Rows every node of an EXPLAIN ANALYZE plan produced, loops included, plus the rows join filters
    threw away: the work the plan did, in rows."""
    own = plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1) + plan.get("Rows Removed by Join Filter", 0)
    return own + sum(_rows_handled(child) for child in plan.get("Plans", []))


def test_a_claim_reads_its_wallets_in_work_linear_in_the_batch_after_a_quiet_analyze(api):
    """Statistics gathered while nothing was PENDING tell the planner a claim returns a row or two.
    Planned on that, a claim that joined its rows to their wallets compared every intent with every
    wallet (the issue 3 bench's bulk drain: 1,000 x 1,800 pairs, 0.45 s a claim). Whatever the
    statistics say, claiming a backlog and reading its wallets handles a few rows per intent."""
    from ledger.settlement import posting

    owner = api.signup()
    first = api.create_wallet(owner)
    intents_count = 400
    with session_factory().begin() as session:
        connection = session.connection()
        wallets = (
            connection.exec_driver_sql(
                """
            INSERT INTO wallets (id, organization_id, owner_id, type, currency, name)
            SELECT gen_random_uuid(), w.organization_id, w.owner_id, 'PRIMARY', w.currency, 'claim-' || n
              FROM wallets AS w, generate_series(1, %(count)s) AS n
             WHERE w.id = %(first)s
            RETURNING id
            """,
                {"first": first, "count": 2 * intents_count},
            )
            .scalars()
            .all()
        )
        session.execute(text("ANALYZE transactions"))  # nothing is PENDING
        connection.exec_driver_sql(
            """
            INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                                      source_wallet_id, destination_wallet_id)
            SELECT gen_random_uuid(), w.organization_id, w.owner_id, 'TRANSFER', 'PENDING', 1, 'INR',
                   (%(wallets)s::uuid[])[2 * n - 1], (%(wallets)s::uuid[])[2 * n]
              FROM wallets AS w, generate_series(1, %(count)s) AS n
             WHERE w.id = %(first)s
            """,
            {"first": first, "wallets": wallets, "count": intents_count},
        )

        def work(statement: str, parameters: dict) -> float:
            explain = "EXPLAIN (ANALYZE, FORMAT JSON) " + statement.replace(")b", ")s")
            return _rows_handled(connection.exec_driver_sql(explain, parameters).scalar_one()[0]["Plan"])

        claimed = work(posting._CLAIM_OLDEST, {"limit": 1000, "min_age": timedelta(seconds=-1), "passed": []})
        owners = work(posting._OWNERS, {"ids": wallets})
        claim = posting.claim_oldest(session, limit=1000, min_age=timedelta(seconds=-1))  # accepted in this transaction
        session.rollback()

    assert len(claim.intents) == intents_count
    assert set(claim.owners) == {uuid.UUID(str(w)) for w in wallets}
    assert claimed + owners <= 10 * (intents_count + len(wallets))


def _hold_wallet_lock(wallet_id: str, release: threading.Event, held: threading.Event) -> None:
    """Another batch, in the middle of its own: it holds one wallet until told to commit."""
    with session_factory().begin() as session:
        session.execute(text("SELECT 1 FROM wallets WHERE id = :id FOR NO KEY UPDATE"), {"id": wallet_id})
        held.set()
        release.wait(timeout=30)


def test_a_batch_goes_ahead_without_the_intents_whose_wallet_another_batch_holds(api, db, unpublished):
    owner = api.signup()
    free_sources = [api.funded_wallet(owner, 1_000) for _ in range(3)]
    busy_source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    unpublished.start()
    ready = [api.transfer(owner, source, destination, 100).json["id"] for source in free_sources]
    waiting = [api.transfer(owner, busy_source, destination, amount).json["id"] for amount in (700, 400)]
    release, held = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_wallet_lock, args=(busy_source, release, held))
    holder.start()
    try:
        assert held.wait(timeout=10)
        with session_factory().begin() as session:
            outcome = settle_transfers(session, [uuid.UUID(i) for i in ready + waiting])
    finally:
        release.set()
        holder.join()
    assert (outcome.completed, outcome.deferred) == (3, 2)  # 3 of 5 may go: at least half, so they do
    assert [api.get(f"/transactions/{i}", owner).json["status"] for i in waiting] == ["PENDING"] * 2

    with session_factory().begin() as session:
        later = settle_transfers(session, [uuid.UUID(i) for i in waiting])
    assert (later.completed, later.failed, later.deferred) == (1, 1, 0)
    # Still in the order they were accepted: the 700 first, then the 400 finds 300 left.
    assert [api.wait_final(owner, i)["status"] for i in waiting] == ["COMPLETED", "FAILED"]
    assert db.wallet_drift([*free_sources, busy_source, destination]) == []


def test_a_batch_waits_for_a_held_wallet_most_of_its_intents_need(api, unpublished):
    owner = api.signup()
    hot = api.create_wallet(owner)
    sources = [api.funded_wallet(owner, 1_000) for _ in range(3)]
    other = api.funded_wallet(owner, 1_000)
    unpublished.start()
    ids = [api.transfer(owner, source, hot, 100).json["id"] for source in sources]
    ids.append(api.transfer(owner, other, sources[0], 100).json["id"])
    release, held = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_wallet_lock, args=(hot, release, held))
    holder.start()
    try:
        assert held.wait(timeout=10)
        threading.Timer(0.5, release.set).start()  # the other batch commits a moment later
        with session_factory().begin() as session:
            outcome = settle_transfers(session, [uuid.UUID(i) for i in ids])
    finally:
        release.set()
        holder.join()
    assert (outcome.completed, outcome.deferred) == (4, 0)  # 1 of 4 could go at once: it waited for all
