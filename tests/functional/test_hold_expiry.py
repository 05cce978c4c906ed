"""Many holds due at the same instant: expired set-based, in a few transactions, each exactly once,
with the ETA tasks (on the real worker), their redeliveries and the sweeper all racing."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime
from typing import Any

from tests.concurrency import race

HOLDS = 500
SOURCES = 12
AMOUNT = 7  # each hold's amount; 500 holds over 12 sources: at most 42 holds (294) on one


def _held_holds(db: Any, sources: list[str], destination: str) -> list[uuid.UUID]:
    """HELD holds, as the engine leaves them (their amounts in their sources' held amounts), due in a minute."""
    organization_id = db.scalar("SELECT organization_id FROM wallets WHERE id = :id", id=destination)
    ids = [uuid.uuid4() for _ in range(HOLDS)]
    for n, hold_id in enumerate(ids):
        db.execute(
            """
            INSERT INTO holds (id, organization_id, status, amount, currency, source_wallet_id,
                               destination_wallet_id, expires_in, expires_at)
            VALUES (:id, :org, 'HELD', :amount, 'INR', :source, :destination, 60, now() + interval '1 minute')
            """,
            id=str(hold_id),
            org=str(organization_id),
            amount=AMOUNT,
            source=sources[n % SOURCES],
            destination=destination,
        )
    db.execute(
        """
        UPDATE wallets w SET held_amount = w.held_amount + s.total
          FROM (SELECT source_wallet_id, sum(amount) AS total FROM holds WHERE id = ANY(CAST(:ids AS uuid[]))
                 GROUP BY source_wallet_id) AS s
         WHERE w.id = s.source_wallet_id
        """,
        ids=[str(i) for i in ids],
    )
    return ids


def _statuses(db: Any, ids: list[uuid.UUID]) -> dict[str, int]:
    rows = db.rows(
        "SELECT status, count(*) FROM holds WHERE id = ANY(CAST(:ids AS uuid[])) GROUP BY status",
        ids=[str(i) for i in ids],
    )
    return {status: count for status, count in rows}


def test_holds_due_together_expire_in_few_transactions_exactly_once(api, db):
    from tasks.holds import expire_holds, schedule_expiry, sweep_expired_holds

    owner = api.signup()
    sources = [api.funded_wallet(owner, 1_000) for _ in range(SOURCES)]
    destination = api.create_wallet(owner)
    ids = _held_holds(db, sources, destination)
    # A monitor in its condition while the holds reserve part of its wallet: their expiry resolves it, once.
    assert api.wallet(owner, sources[0])["available_balance"] < 800
    monitor = api.post(
        f"/wallets/{sources[0]}/monitors", owner, json={"condition": "available_balance_below", "threshold": 800}
    )
    assert monitor.status_code == 201, monitor.json
    assert monitor.json["in_condition"] is True
    due: datetime = db.scalar("SELECT clock_timestamp() + interval '1 second'")
    db.execute(
        "UPDATE holds SET expires_at = :due WHERE id = ANY(CAST(:ids AS uuid[]))", due=due, ids=[str(i) for i in ids]
    )

    # The engine's ETA tasks for them (the worker runs them at `due`), and at that instant the
    # sweeper, and the same task delivered twice more in this process, all at once.
    schedule_expiry([(hold_id, due) for hold_id in ids])
    time.sleep(max((due - db.scalar("SELECT clock_timestamp()")).total_seconds(), 0) + 0.05)
    as_text = [str(i) for i in ids]
    counts = race(sweep_expired_holds, lambda: expire_holds(as_text), lambda: expire_holds(as_text))
    for _ in range(100):
        if _statuses(db, ids) == {"EXPIRED": HOLDS}:
            break
        time.sleep(0.1)
    assert _statuses(db, ids) == {"EXPIRED": HOLDS}
    assert sum(counts) <= HOLDS  # the worker's task may have taken some or all of them

    # Few transactions: each stamps the holds it ends with one instant.
    transactions = db.scalar(
        "SELECT count(DISTINCT ended_at) FROM holds WHERE id = ANY(CAST(:ids AS uuid[]))", ids=as_text
    )
    assert 1 <= transactions <= 4, transactions
    # Exactly once: one event per hold, every held amount released, the ledger untouched.
    events = db.rows(
        "SELECT aggregate_id, count(*) FROM outbox_events WHERE event_type = 'hold.expired'"
        " AND aggregate_id = ANY(CAST(:ids AS text[])) GROUP BY aggregate_id",
        ids=as_text,
    )
    assert len(events) == HOLDS and {count for _, count in events} == {1}
    for source in sources:
        assert (api.wallet(owner, source)["balance"], api.wallet(owner, source)["held_amount"]) == (1_000, 0)
    crossings = db.rows(
        "SELECT event_type, payload->>'hold_id' FROM outbox_events WHERE aggregate_id = :id ORDER BY id",
        id=monitor.json["id"],
    )
    assert [event_type for event_type, _ in crossings] == ["balance_monitor.resolved"]
    assert uuid.UUID(crossings[0][1]) in set(ids)
    assert sweep_expired_holds() == 0 and expire_holds(as_text) == 0
    run = api.post("/reconciliation/run", owner, json={"mode": "FULL"}).json
    assert run["status"] == "CLEAN", run


def test_a_hold_settles_while_another_transaction_holds_its_destination(api, db, monkeypatch):
    """A HOLD intent moves nothing on its destination, so its batch does not lock it: holds towards a
    hot merchant settle while a batch crediting that merchant holds its row lock."""
    from models.db import get_engine
    from tasks.settlement import settle_once
    from web.routes import holds as hold_routes

    published: list[Any] = []
    monkeypatch.setattr(hold_routes, "settle_soon", published.extend)  # settled here, below
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    merchant = api.create_wallet(owner)
    body = {"source_wallet_id": source, "destination_wallet_id": merchant, "amount": 300}
    accepted = api.post("/holds", owner, json=body)
    assert accepted.status_code == 202, accepted.json
    hold_id = uuid.UUID(accepted.json["id"])
    assert published == [hold_id]

    with get_engine().connect() as other:
        other.exec_driver_sql("SELECT id FROM wallets WHERE id = %(id)s FOR NO KEY UPDATE", {"id": merchant})
        settling = threading.Thread(target=settle_once, args=([hold_id],))
        settling.start()
        settling.join(timeout=15)
        stuck = settling.is_alive()
        other.rollback()  # the merchant's lock goes: a stuck settle finishes, and the test fails below
    settling.join()
    assert not stuck, "the hold's batch waited for its destination's row lock"
    assert db.scalar("SELECT status FROM holds WHERE id = :id", id=str(hold_id)) == "HELD"
    assert api.wallet(owner, source)["held_amount"] == 300
