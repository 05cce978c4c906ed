"""Two paths that used to deadlock with a cross-organisation settlement batch, now in one global lock
order (ledger.settlement.posting.lock_wallets): Postgres had to break the cycle and one side retried.

1. A settle task naming intents that are already final (a duplicate message, a sweep) locked their
   rows, then waited for wallets; a settlement batch holding those wallets waited to mark the transfer.
2. A treasury credited by 16 withdrawals or more in one batch was locked last, after the batch's
   clearing wallet; a settlement batch locks treasury and clearing wallets in id order.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from ledger.clearing.batches import run_batch
from ledger.settlement import posting, risk
from ledger.settlement.posting import LATE_LOCK_CREDITS_MIN
from models import BatchTrigger
from models.db import session_factory
from models.ids import new_id
from tasks.settlement import settle_once

RETRIED = "settlement contention, retrying"


def _pending(db, owner, kind: str, rows: list[tuple[str, str, int]]) -> list[uuid.UUID]:
    """PENDING intents of this kind, dated an hour ahead so that no worker's drain takes them."""
    ids = [new_id() for _ in rows]
    db.execute(
        """
        INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                                  source_wallet_id, destination_wallet_id, created_at)
        SELECT id, :org, :user, :kind, 'PENDING', amount, 'INR', source, destination,
               now() + interval '1 hour' + n * interval '1 microsecond'
          FROM unnest(CAST(:ids AS uuid[]), CAST(:sources AS uuid[]), CAST(:destinations AS uuid[]),
                      CAST(:amounts AS bigint[])) WITH ORDINALITY AS t(id, source, destination, amount, n)
        """,
        org=owner.organization_id,
        user=owner.id,
        kind=kind,
        ids=[str(i) for i in ids],
        sources=[r[0] for r in rows],
        destinations=[r[1] for r in rows],
        amounts=[r[2] for r in rows],
    )
    return ids


def _system_wallet(db, owner, name: str) -> str:
    return str(
        db.scalar(
            "SELECT id FROM wallets WHERE organization_id = :o AND type = 'SYSTEM' AND name = :n",
            o=owner.organization_id,
            n=name,
        )
    )


class BatchBeside:
    """A settlement batch run in a thread of its own, its error kept."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            with session_factory().begin() as session:
                run_batch(session, trigger=BatchTrigger.CLI)
        except BaseException as error:
            self.errors.append(error)

    def start_and_wait_until_it_waits_or_ends(self, db, seconds: float = 10) -> None:
        self.thread.start()
        deadline = time.monotonic() + seconds
        while self.thread.is_alive() and time.monotonic() < deadline:
            waiting = db.scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting:
                return
            time.sleep(0.02)


def _statuses(db, ids: list[uuid.UUID]) -> set[Any]:
    rows = db.rows("SELECT status FROM transactions WHERE id = ANY(CAST(:ids AS uuid[]))", ids=[str(i) for i in ids])
    return {row[0] for row in rows}


def test_a_settle_task_naming_a_final_transfer_does_not_deadlock_with_a_settlement_batch(api, db, monkeypatch, caplog):
    merchant, customer = api.signup("Merchant"), api.signup("Customer")
    shop, source = api.create_wallet(merchant), api.funded_wallet(customer, 10_000)
    final = api.transfer(customer, source, shop, 100).json["id"]
    assert api.wait_final(customer, final)["status"] == "COMPLETED"  # its obligation awaits a batch
    (pending,) = _pending(db, customer, "TRANSFER", [(source, shop, 50)])
    claimed, go = threading.Event(), threading.Event()
    real_lock_for = posting.lock_for

    def lock_for(*args, **kwargs):  # the settle task, between its claim and its wallet locks
        if not claimed.is_set():
            claimed.set()
            go.wait(timeout=30)
        return real_lock_for(*args, **kwargs)

    monkeypatch.setattr(posting, "lock_for", lock_for)
    settled: list[Any] = []
    task = threading.Thread(target=lambda: settled.append(settle_once([uuid.UUID(final), pending])))
    batch = BatchBeside()
    with caplog.at_level(logging.WARNING, logger="tasks.settlement"):
        task.start()
        assert claimed.wait(timeout=30)
        batch.start_and_wait_until_it_waits_or_ends(db)
        go.set()
        task.join(timeout=60)
        batch.thread.join(timeout=60)

    assert batch.errors == []
    assert not [r for r in caplog.records if r.message == RETRIED]  # nobody lost a deadlock
    assert settled[0].completed == 1
    assert _statuses(db, [pending]) == {"COMPLETED"}
    assert db.scalar("SELECT settlement_batch_id IS NOT NULL FROM transactions WHERE id = :i", i=final)


def test_a_treasury_credited_by_many_withdrawals_does_not_deadlock_with_a_settlement_batch(
    api, db, monkeypatch, caplog
):
    owner, other = api.signup("Payer"), api.signup("Payee")
    payers = [api.funded_wallet(owner, 1_000) for _ in range(LATE_LOCK_CREDITS_MIN)]  # the treasury first
    faraway = api.create_wallet(other)
    crossing = api.transfer(owner, payers[0], faraway, 10).json["id"]  # then the clearing wallet
    assert api.wait_final(owner, crossing)["status"] == "COMPLETED"
    treasury, clearing = _system_wallet(db, owner, "treasury"), _system_wallet(db, owner, "clearing")
    assert uuid.UUID(treasury) < uuid.UUID(clearing)  # a settlement batch locks the treasury first
    withdrawals = _pending(db, owner, "WITHDRAWAL", [(p, treasury, 100) for p in payers])
    transfers = _pending(db, owner, "TRANSFER", [(payers[1], faraway, 20)])  # needs the clearing wallet
    batch = BatchBeside()
    real_load_budget = risk.load_budget

    def load_budget(*args, **kwargs):  # the settle batch, holding its wallets, before it plans
        if not batch.thread.is_alive() and not batch.thread.ident:
            batch.start_and_wait_until_it_waits_or_ends(db)
        return real_load_budget(*args, **kwargs)

    monkeypatch.setattr(risk, "load_budget", load_budget)
    with caplog.at_level(logging.WARNING, logger="tasks.settlement"):
        outcome = settle_once([*withdrawals, *transfers])
        batch.thread.join(timeout=60)

    assert batch.errors == []
    assert not [r for r in caplog.records if r.message == RETRIED]  # nobody lost a deadlock
    assert outcome.completed == len(withdrawals) + len(transfers)
    assert _statuses(db, [*withdrawals, *transfers]) == {"COMPLETED"}
    assert db.broken_chains([treasury, clearing, *payers]) == []
    assert db.wallet_drift([treasury, clearing, *payers]) == []
