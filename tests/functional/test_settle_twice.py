"""The settle task delivered twice, in turn and at the same moment: one posting."""

from __future__ import annotations

import threading
import uuid

from ledger.settlement.posting import settle_transfers
from models.db import session_factory
from tasks.settlement import enqueue_settlement


def _pending_transfer(api, loss, amount=300):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    loss.start()
    return owner, source, destination, api.transfer(owner, source, destination, amount).json["id"]


def test_duplicate_messages_post_once(api, db, unpublished):
    owner, source, destination, transaction_id = _pending_transfer(api, unpublished)
    for _ in range(3):
        assert enqueue_settlement([uuid.UUID(transaction_id)])
    assert api.wait_final(owner, transaction_id)["status"] == "COMPLETED"
    enqueue_settlement([uuid.UUID(transaction_id)])  # and once more after it completed

    assert api.wait_final(owner, transaction_id)["status"] == "COMPLETED"
    assert db.scalar("SELECT count(*) FROM ledger_entries WHERE transaction_id = :t", t=transaction_id) == 2
    assert api.wallet(owner, source)["balance"] == 700
    assert db.wallet_drift([source, destination]) == []


def test_settling_in_turn_is_a_no_op_the_second_time(api, db, unpublished):
    _owner, _source, _destination, transaction_id = _pending_transfer(api, unpublished)
    with session_factory().begin() as session:
        first = settle_transfers(session, [uuid.UUID(transaction_id)])
    with session_factory().begin() as session:
        second = settle_transfers(session, [uuid.UUID(transaction_id)])
    assert (first.completed, second.completed, second.skipped) == (1, 0, 1)
    assert db.scalar("SELECT count(*) FROM ledger_entries WHERE transaction_id = :t", t=transaction_id) == 2


def test_settling_concurrently_posts_once(api, db, unpublished):
    owner, _source, destination, transaction_id = _pending_transfer(api, unpublished)
    barrier = threading.Barrier(2)
    outcomes = []

    def settle() -> None:
        with session_factory().begin() as session:
            barrier.wait()
            outcomes.append(settle_transfers(session, [uuid.UUID(transaction_id)]))

    threads = [threading.Thread(target=settle) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(o.completed for o in outcomes) == [0, 1]
    assert db.scalar("SELECT count(*) FROM ledger_entries WHERE transaction_id = :t", t=transaction_id) == 2
    assert api.wallet(owner, destination)["balance"] == 300


def test_sweep_settles_intents_whose_message_was_lost(api, unpublished):
    owner, _source, _destination, transaction_id = _pending_transfer(api, unpublished)
    assert api.wait_final(owner, transaction_id, seconds=2.5)["status"] == "PENDING"  # nothing was published
    from tasks.settlement import sweep_pending_transactions

    assert sweep_pending_transactions() >= 1  # stale bound is 2 s in the test run
    assert api.wait_final(owner, transaction_id)["status"] == "COMPLETED"
