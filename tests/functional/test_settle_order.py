"""Intents that debit the same wallet settle in the order they were accepted, whichever endpoint
accepted them (ledger/settlement/order.py): the first one gets the funds and the risk headroom, whatever task
or drainer takes the later ones."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from ledger.settlement import order, risk
from ledger.settlement.posting import settle_oldest_pending
from models.db import session_factory
from models.ids import new_id
from tests.client import bulk_item

REPEATS = 5
EVERYONE = timedelta(hours=-2)  # a claim's min_age that takes the intents dated ahead below


def _accepted(response) -> str:
    assert response.status_code == 202, response.json
    body = response.json
    return str(body["transaction"]["id"] if "transaction" in body else body["id"])


def _bulk_one(api, owner, source: str, destination: str, amount: int) -> str:
    response = api.transfer_batch(owner, [bulk_item(source, destination, amount)])
    assert response.status_code == 202, response.json
    (item,) = response.json["items"]
    assert item["status_code"] == 202, item
    return str(item["transaction"]["id"])


def _outcome(api, owner, transaction_id: str) -> tuple[str, str | None]:
    final = api.wait_final(owner, transaction_id)
    return final["status"], final["failure_reason"]


@pytest.mark.parametrize("attempt", range(REPEATS))
def test_a_single_transfer_accepted_before_a_bulk_item_from_the_same_wallet_settles_first(api, attempt):
    owner = api.signup()
    source = api.funded_wallet(owner, 100)
    first_payee, second_payee = api.create_wallet(owner), api.create_wallet(owner)

    single = _accepted(api.transfer(owner, source, first_payee, 100))
    bulk = _bulk_one(api, owner, source, second_payee, 100)

    assert _outcome(api, owner, single) == ("COMPLETED", None)
    assert _outcome(api, owner, bulk) == ("FAILED", "INSUFFICIENT_FUNDS")
    assert api.wallet(owner, first_payee)["balance"] == 100


@pytest.mark.parametrize("attempt", range(REPEATS))
def test_a_bulk_payout_accepted_after_a_deposit_into_its_wallet_completes(api, attempt):
    owner = api.signup()
    wallet, payee = api.create_wallet(owner), api.create_wallet(owner)

    deposit = api.deposit(owner, wallet, 5_000)["id"]
    payout = _bulk_one(api, owner, wallet, payee, 700)

    assert _outcome(api, owner, deposit) == ("COMPLETED", None)
    assert _outcome(api, owner, payout) == ("COMPLETED", None)
    assert api.wallet(owner, wallet)["balance"] == 4_300


def test_risk_headroom_goes_to_the_intent_accepted_first(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    first_payee, second_payee = api.create_wallet(owner), api.create_wallet(owner)
    response = api.request("PUT", "/organizations/risk-limits", owner, json={"daily_outgoing_max_per_wallet": 100})
    assert response.status_code == 200, response.json

    single = _accepted(api.transfer(owner, source, first_payee, 100))
    bulk = _bulk_one(api, owner, source, second_payee, 100)

    assert _outcome(api, owner, single) == ("COMPLETED", None)
    assert _outcome(api, owner, bulk) == ("FAILED", "RISK_LIMIT")


ENDPOINTS = ["transfer", "wallets_transfer", "withdraw", "bulk", "p2p_settle"]


def _intake(api, owner, payee_user, source: str, payee: str) -> dict[str, Callable[[], str]]:
    """Each endpoint that debits `source` by 100, as a call that returns the accepted intent's id."""

    def wallets_transfer() -> str:
        body = {"source_wallet_id": source, "destination_wallet_id": payee, "amount": 100, "currency": "INR"}
        return _accepted(api.post("/wallets/transfer", owner, json=body))

    request = api.p2p_request(payee_user, owner, api.create_wallet(payee_user), 100)
    return {
        "transfer": lambda: _accepted(api.transfer(owner, source, payee, 100)),
        "wallets_transfer": wallets_transfer,
        "withdraw": lambda: _accepted(api.post(f"/wallets/{source}/withdraw", owner, json={"amount": 100})),
        "bulk": lambda: _bulk_one(api, owner, source, payee, 100),
        "p2p_settle": lambda: _accepted(api.p2p_settle(owner, request["id"], source)),
    }


@pytest.mark.parametrize("first", ENDPOINTS)
def test_the_intent_accepted_first_gets_the_funds_whichever_endpoint_accepted_each(api, first):
    owner, payee_user = api.signup(), api.signup()
    source = api.funded_wallet(owner, 100)
    payee = api.create_wallet(owner)
    intake = _intake(api, owner, payee_user, source, payee)

    ids = [intake[name]() for name in [first, *(e for e in ENDPOINTS if e != first)]]

    outcomes = [_outcome(api, owner, i) for i in ids]
    assert outcomes == [("COMPLETED", None)] + [("FAILED", "INSUFFICIENT_FUNDS")] * (len(ENDPOINTS) - 1)
    assert api.wallet(owner, source)["balance"] == 0


# --- drainers side by side, in this process ------------------------------------------------------


def _pending(db, owner, rows: list[tuple[str, str, int]]) -> list[uuid.UUID]:
    """PENDING transfers in this order, dated an hour ahead so that no worker's drain takes them."""
    ids = [new_id() for _ in rows]
    db.execute(
        """
        INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                                  source_wallet_id, destination_wallet_id, created_at)
        SELECT id, :org, :user, 'TRANSFER', 'PENDING', amount, 'INR', source, destination,
               now() + interval '1 hour' + n * interval '1 microsecond'
          FROM unnest(CAST(:ids AS uuid[]), CAST(:sources AS uuid[]), CAST(:destinations AS uuid[]),
                      CAST(:amounts AS bigint[])) WITH ORDINALITY AS t(id, source, destination, amount, n)
        """,
        org=owner.organization_id,
        user=owner.id,
        ids=[str(i) for i in ids],
        sources=[r[0] for r in rows],
        destinations=[r[1] for r in rows],
        amounts=[r[2] for r in rows],
    )
    return ids


def _outcomes(db, ids: list[uuid.UUID]) -> list[tuple[str, str | None]]:
    found = dict(
        (row[0], (row[1], row[2]))
        for row in db.rows(
            "SELECT id, status, failure_reason FROM transactions WHERE id = ANY(CAST(:ids AS uuid[]))",
            ids=[str(i) for i in ids],
        )
    )
    return [found[i] for i in ids]


def _drain_batch(limit: int) -> Any:
    with session_factory().begin() as session:
        return settle_oldest_pending(session, limit=limit, min_age=EVERYONE)


# The order check reads what is older than a batch and outside it in one go, or, when that is more
# than it reads at once, wallet by wallet (ledger/settlement/order.py): both ways are tried.
OLDER_OUTSIDE_READS = pytest.mark.parametrize(
    "older_outside_max", [order.OLDER_OUTSIDE_MAX, 1], ids=["at-once", "per-wallet"]
)


@OLDER_OUTSIDE_READS
def test_a_drainer_does_not_settle_past_an_older_intent_another_drainer_holds(api, db, monkeypatch, older_outside_max):
    monkeypatch.setattr(order, "OLDER_OUTSIDE_MAX", older_outside_max)
    owner = api.signup()
    sources = [api.funded_wallet(owner, 100) for _ in range(4)]
    first_payee, second_payee = api.create_wallet(owner), api.create_wallet(owner)
    firsts = _pending(db, owner, [(s, first_payee, 100) for s in sources])
    seconds = _pending(db, owner, [(s, second_payee, 100) for s in sources])
    slow = threading.Event()
    release = threading.Event()
    real_load_budget = risk.load_budget

    def load_budget(*args, **kwargs):
        if threading.current_thread().name == "first-drainer":
            slow.set()
            release.wait(timeout=30)  # holds its claim of `firsts` while the second drainer runs
        return real_load_budget(*args, **kwargs)

    monkeypatch.setattr(risk, "load_budget", load_budget)
    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(_drain_batch(len(firsts))), name="first-drainer")
    first.start()
    assert slow.wait(timeout=30)
    second = _drain_batch(len(seconds))  # claims `seconds`: `firsts` are locked, so SKIP LOCKED passes them
    release.set()
    first.join(timeout=30)

    assert (second.completed, second.failed, second.deferred) == (0, 0, len(seconds))
    assert results[0].completed == len(firsts)
    _drain_batch(len(seconds))
    assert _outcomes(db, firsts) == [("COMPLETED", None)] * len(firsts)
    assert _outcomes(db, seconds) == [("FAILED", "INSUFFICIENT_FUNDS")] * len(seconds)


def _expected(balance: int, amounts: list[int]) -> list[str]:
    statuses = []
    for amount in amounts:
        ok = amount <= balance
        balance -= amount if ok else 0
        statuses.append("COMPLETED" if ok else "FAILED")
    return statuses


@OLDER_OUTSIDE_READS
def test_several_drainers_at_once_settle_each_wallet_in_accepted_order(api, db, monkeypatch, older_outside_max):
    monkeypatch.setattr(order, "OLDER_OUTSIDE_MAX", older_outside_max)
    owner = api.signup()
    sources = [api.funded_wallet(owner, 100) for _ in range(8)]
    payees = [api.create_wallet(owner) for _ in range(3)]
    amounts = [60, 50, 40, 30, 10]  # in order: 60 yes, 50 no, 40 yes, 30 no, 10 no
    rows = [(s, payees[(n + k) % 3], amount) for n, amount in enumerate(amounts) for k, s in enumerate(sources)]
    ids = _pending(db, owner, rows)
    errors: list[BaseException] = []

    def drainer() -> None:
        try:
            for _ in range(200):
                if not db.scalar(
                    "SELECT count(*) FROM transactions WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'PENDING'",
                    ids=[str(i) for i in ids],
                ):
                    return
                _drain_batch(5)
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=drainer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    statuses = [status for status, _ in _outcomes(db, ids)]
    for k, source in enumerate(sources):
        mine = [statuses[n * len(sources) + k] for n in range(len(amounts))]
        assert mine == _expected(100, amounts), source
    assert db.broken_chains([*sources, *payees]) == []


def test_intents_accepted_in_one_statement_all_settle_whatever_order_their_ids_have(api, db):
    """Intents that share their `created_at` (a bulk request, or any one-statement insert) and have
    ids in no particular order: the drain takes them first accepted first, ties by id, as the order
    rule ranks them. Taken by created_at alone, a claim cut through the tie arbitrarily, deferred
    every intent with an older sibling outside it, and claimed the same rows again: nothing settled."""
    owner = api.signup()
    sources = [api.funded_wallet(owner, 1_000) for _ in range(3)]
    destination = api.create_wallet(owner)
    ids = [uuid.uuid4() for _ in range(30)]  # random, not time-ordered: insertion order is not id order
    db.execute(
        """
        INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                                  source_wallet_id, destination_wallet_id, created_at)
        SELECT id, :org, :user, 'TRANSFER', 'PENDING', 1, 'INR', source, :destination,
               now() + interval '1 hour'
          FROM unnest(CAST(:ids AS uuid[]), CAST(:sources AS uuid[])) AS t(id, source)
        """,
        org=owner.organization_id,
        user=owner.id,
        destination=destination,
        ids=[str(i) for i in ids],
        sources=[sources[n % 3] for n in range(len(ids))],
    )

    for _ in range(10):  # 30 intents in batches of 8: four batches when nothing stalls
        _drain_batch(8)

    assert _outcomes(db, ids) == [("COMPLETED", None)] * len(ids)
