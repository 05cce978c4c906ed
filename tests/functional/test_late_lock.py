"""A hot wallet that a batch only credits is locked last (ledger.settlement.posting.late_wallets).

The batch plans its credits against the wallet read without a lock, so these tests act in the gap
between that read and the lock: another transfer posts to the wallet, its status changes, or a
transfer that locks it first waits for a wallet the batch holds (a deadlock Postgres breaks).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from ledger.settlement import posting
from ledger.settlement.posting import LATE_LOCK_CREDITS_MIN
from models.ids import new_id
from tasks.settlement import settle_once

CREDITS = LATE_LOCK_CREDITS_MIN + 4


def _pending(db, owner, source: str, destination: str, amount: int, count: int = 1) -> list[uuid.UUID]:
    """PENDING transfers dated an hour ahead, so no worker's drain (oldest first, up to now) takes them."""
    ids = [new_id() for _ in range(count)]
    db.execute(
        """
        INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                                  source_wallet_id, destination_wallet_id, created_at)
        SELECT id, :org, :user, 'TRANSFER', 'PENDING', :amount, 'INR', :source, :destination,
               now() + interval '1 hour' + n * interval '1 microsecond'
          FROM unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS t(id, n)
        """,
        org=owner.organization_id,
        user=owner.id,
        amount=amount,
        source=source,
        destination=destination,
        ids=[str(i) for i in ids],
    )
    return ids


def _before_late_lock(monkeypatch: pytest.MonkeyPatch, act: Callable[[], None]) -> list[int]:
    """Run `act` once, just before the batch locks its late wallets. Returns the calls of lock_late."""
    calls: list[int] = []
    real_lock_late = posting.lock_late

    def lock_late(session, seen):
        calls.append(len(seen))
        if len(calls) == 1:
            act()
        return real_lock_late(session, seen)

    monkeypatch.setattr(posting, "lock_late", lock_late)
    return calls


def _statuses(db, ids: list[uuid.UUID]) -> dict[tuple[str, str | None], int]:
    rows = db.rows(
        "SELECT status, failure_reason, count(*) FROM transactions WHERE id = ANY(CAST(:ids AS uuid[]))"
        " GROUP BY status, failure_reason",
        ids=[str(i) for i in ids],
    )
    return {(row[0], row[1]): row[2] for row in rows}


def test_credits_posted_while_the_batch_planned_come_first_in_the_hot_wallets_chain(api, db, monkeypatch):
    owner = api.signup()
    payer, interloper = api.funded_wallet(owner, 10_000), api.funded_wallet(owner, 10_000)
    hot = api.create_wallet(owner)
    batch = _pending(db, owner, payer, hot, 10, CREDITS)
    (between,) = _pending(db, owner, interloper, hot, 7)

    def settle_another_credit() -> None:  # in its own transaction: the hot wallet is not locked yet
        assert settle_once([between]).completed == 1

    calls = _before_late_lock(monkeypatch, settle_another_credit)
    outcome = settle_once(batch)

    assert (outcome.completed, calls) == (CREDITS, [1])
    assert api.wallet(owner, hot)["balance"] == 7 + 10 * CREDITS
    assert api.wallet(owner, hot)["version"] == 1 + CREDITS
    assert db.broken_chains([payer, interloper, hot]) == []
    assert db.wallet_drift([payer, interloper, hot]) == []
    chain = db.rows(
        "SELECT transaction_id, balance_after, created_at FROM ledger_entries WHERE wallet_id = :w"
        " ORDER BY wallet_version",
        w=hot,
    )
    assert [row[0] for row in chain] == [between, *batch]  # the batch's credits rebased after it, in order
    assert [row[1] for row in chain] == [7 + 10 * n for n in range(CREDITS + 1)]
    times = [row[2] for row in chain]
    assert times == sorted(times)  # entry times never run backwards along the versions
    events = db.scalar(
        "SELECT array_agg(aggregate_id::uuid ORDER BY id) FROM outbox_events"
        " WHERE aggregate_type = 'transaction' AND aggregate_id = ANY(:ids)",
        ids=[str(i) for i in (between, *batch)],
    )
    assert events == [between, *batch]  # the wallet's events in the order of its versions


def test_a_hot_wallet_locked_while_the_batch_planned_fails_its_credits_on_the_retry(api, db, monkeypatch):
    owner = api.signup()
    payer = api.funded_wallet(owner, 10_000)
    hot = api.create_wallet(owner)
    batch = _pending(db, owner, payer, hot, 10, CREDITS)

    def lock_the_wallet() -> None:
        response = api.patch(f"/wallets/{hot}", owner, json={"status": "LOCKED"})
        assert response.status_code == 200, response.json

    calls = _before_late_lock(monkeypatch, lock_the_wallet)
    outcome = settle_once(batch)

    # The first attempt found the wallet LOCKED under its lock and planned again, from the start.
    assert len(calls) == 2
    assert (outcome.completed, outcome.failed) == (0, CREDITS)
    assert _statuses(db, batch) == {("FAILED", "WALLET_NOT_ACTIVE"): CREDITS}
    assert api.wallet(owner, payer)["balance"] == 10_000
    assert api.wallet(owner, hot)["balance"] == 0
    assert db.scalar("SELECT count(*) FROM ledger_entries WHERE wallet_id = :w", w=hot) == 0


def _wait_for_a_lock_wait(db, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not db.scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ):
        assert time.monotonic() < deadline, "the other transfer never waited for a lock"
        time.sleep(0.02)


def test_a_transfer_locking_the_hot_wallet_first_deadlocks_with_the_batch_and_both_settle(api, db, monkeypatch, caplog):
    owner = api.signup()
    first, second = sorted((api.funded_wallet(owner, 1_000), api.funded_wallet(owner, 1_000)), key=uuid.UUID)
    # `hot` sorts before `other`: a transfer naming both locks hot first; the batch locks other first.
    hot, other = first, second
    payer, payee = api.funded_wallet(owner, 10_000), api.create_wallet(owner)
    batch = [*_pending(db, owner, payer, hot, 10, CREDITS), *_pending(db, owner, other, payee, 100)]
    (payout,) = _pending(db, owner, hot, other, 250)
    settled: list[posting.SettleOutcome] = []
    racer = threading.Thread(target=lambda: settled.append(settle_once([payout])))

    def start_the_payout() -> None:  # it locks hot, then waits for other, which the batch holds
        racer.start()
        _wait_for_a_lock_wait(db)

    _before_late_lock(monkeypatch, start_the_payout)
    with caplog.at_level(logging.WARNING, logger="tasks.settlement"):
        outcome = settle_once(batch)
        racer.join(timeout=30)

    assert any(r.message == "settlement contention, retrying" for r in caplog.records)  # one of them deadlocked
    assert (outcome.completed, settled[0].completed) == (CREDITS + 1, 1)
    assert _statuses(db, [*batch, payout]) == {("COMPLETED", None): CREDITS + 2}
    balances = {w: api.wallet(owner, w)["balance"] for w in (hot, other, payer, payee)}
    assert balances == {
        hot: 1_000 + 10 * CREDITS - 250,
        other: 1_000 - 100 + 250,
        payer: 10_000 - 10 * CREDITS,
        payee: 100,
    }
    assert db.broken_chains([hot, other, payer, payee]) == []
    assert db.wallet_drift([hot, other, payer, payee]) == []


def test_requests_paid_across_organisations_into_one_hot_wallet_settle_in_a_late_locked_batch(
    api, db, monkeypatch, unpublished
):
    merchant, customer = api.signup("Merchant"), api.signup("Customer")
    hot, source = api.create_wallet(merchant), api.funded_wallet(customer, 100_000)
    requests = [api.p2p_request(merchant, customer, hot, 100 + n) for n in range(CREDITS)]
    unpublished.start()
    transfers = []
    for request in requests:
        response = api.p2p_settle(customer, request["id"], source)
        assert response.status_code == 202, response.json
        transfers.append(uuid.UUID(response.json["transaction"]["id"]))
    calls = _before_late_lock(monkeypatch, lambda: None)

    outcome = settle_once(transfers)

    assert (outcome.completed, calls) == (CREDITS, [1])  # the payee's wallet was locked last
    paid = sum(100 + n for n in range(CREDITS))
    assert api.wallet(merchant, hot)["balance"] == paid
    assert api.wallet(customer, source)["balance"] == 100_000 - paid
    assert {api.p2p_get(merchant, r["id"]).json["status"] for r in requests} == {"SETTLED"}
    obligations = db.scalar(
        "SELECT count(*) FROM transactions"
        " WHERE type = 'CLEARING' AND parent_transaction_id = ANY(CAST(:ids AS uuid[]))",
        ids=[str(t) for t in transfers],
    )
    assert obligations == CREDITS  # each transfer owes its obligation between the organisations
    assert db.broken_chains([hot, source]) == []
    assert db.wallet_drift([hot, source]) == []
    # Each request's event comes before its transaction's, as on the path with no late wallet.
    for request, transfer in zip(requests, transfers, strict=True):
        request_event, transfer_event = (
            db.scalar(
                "SELECT max(id) FROM outbox_events WHERE aggregate_id = :id AND event_type = :type",
                id=str(aggregate),
                type=event_type,
            )
            for aggregate, event_type in (
                (request["id"], "p2p_request.settled"),
                (transfer, "transaction.completed"),
            )
        )
        assert request_event < transfer_event


def test_a_hold_released_while_the_batch_planned_stays_released(api, db, monkeypatch):
    """The batch writes a late wallet's held_amount back with its balance: moved by what a void did
    in the gap, never the amount it read unlocked."""
    owner = api.signup()
    payer, hot = api.funded_wallet(owner, 10_000), api.funded_wallet(owner, 1_000)
    other = api.create_wallet(owner)
    hold = api.post("/holds", owner, json={"source_wallet_id": hot, "destination_wallet_id": other, "amount": 400})
    hold_id = (hold.json or {})["id"]
    assert (api.get(f"/holds/{hold_id}?wait=10", owner).json or {})["status"] == "HELD"
    batch = _pending(db, owner, payer, hot, 10, CREDITS)

    def void_the_hold() -> None:  # through the API, in its own transaction: the hot wallet is not locked yet
        assert (api.post(f"/holds/{hold_id}/void", owner).json or {})["status"] == "VOIDED"

    calls = _before_late_lock(monkeypatch, void_the_hold)
    assert settle_once(batch).completed == CREDITS
    assert calls == [1]
    wallet = api.wallet(owner, hot)
    balance = 1_000 + 10 * CREDITS
    assert (wallet["balance"], wallet["held_amount"], wallet["available_balance"]) == (balance, 0, balance)
