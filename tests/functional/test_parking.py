"""One intent that cannot be settled does not stall the drain: the rest of its batch settles, and
after a bounded number of failures it is parked (ledger/settlement/parking.py), visible and passed by."""

from __future__ import annotations

import logging
import re
import time
import uuid

from models.ids import new_id
from ops.metrics import INTENTS_PARKED
from settings import get_settings
from tasks.settlement import settle_or_bisect

BIGINT_MAX = 2**63 - 1


def _treasury(db, owner) -> str:
    return str(
        db.scalar(
            "SELECT id FROM wallets WHERE organization_id = :o AND type = 'SYSTEM' AND name = 'treasury'",
            o=owner.organization_id,
        )
    )


def _poison_deposit(db, owner, wallet: str, *, hours_ahead: int = 0) -> uuid.UUID:
    """A deposit no treasury can pay: its amount would take the treasury below the lowest BIGINT.
    The API's amount ceiling refuses it; a row written behind its back (an import, an older
    release) is not refused by the table, and settling it raises inside the plan."""
    poison = new_id()
    db.execute(
        """
        INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                                  source_wallet_id, destination_wallet_id, created_at)
        VALUES (:id, :org, :user, 'DEPOSIT', 'PENDING', :amount, 'INR', :treasury, :wallet,
                now() + :hours * interval '1 hour')
        """,
        id=str(poison),
        org=owner.organization_id,
        user=owner.id,
        amount=BIGINT_MAX,
        treasury=_treasury(db, owner),
        wallet=wallet,
        hours=hours_ahead,
    )
    return poison


def _parked_gauge(api) -> float:
    text = api.http.get("/metrics").get_data(as_text=True)
    match = re.search(r"^vaultcraft_parked_intents (\S+)$", text, re.MULTILINE)
    assert match, "the gauge is exported"
    return float(match.group(1))


def test_a_poison_intent_is_parked_and_the_rest_of_its_batch_and_its_wallet_settle(api, db):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)  # the deposit creates the organisation's treasury
    payee = api.create_wallet(owner)
    poison = _poison_deposit(db, owner, payee)

    transfers = [api.transfer(owner, source, payee, 100 + n).json["id"] for n in range(5)]
    # Debits the treasury after the poison: it waits its turn, and gets it once the poison is parked.
    deposit = api.deposit(owner, payee, 700)["id"]

    assert [api.wait_final(owner, t)["status"] for t in transfers] == ["COMPLETED"] * 5
    assert api.wait_final(owner, deposit)["status"] == "COMPLETED"
    parked = api.get(f"/transactions/{poison}", owner).json
    assert (parked["status"], parked["parked"], parked["completed_at"]) == ("PENDING", True, None)
    assert parked["park_reason"].startswith("AssertionError: balance outside BIGINT")
    assert parked["parked_at"] is not None
    failures_max = get_settings().settle_failures_before_park
    assert db.scalar("SELECT settle_failures FROM transactions WHERE id = :i", i=str(poison)) == failures_max
    assert _parked_gauge(api) == db.scalar(
        "SELECT count(*) FROM transactions WHERE parked_at IS NOT NULL AND status = 'PENDING'"
    )
    assert _parked_gauge(api) >= 1

    # Later drains pass it by: it is not tried again, and it stays visible.
    later = api.transfer(owner, source, payee, 1).json["id"]
    assert api.wait_final(owner, later)["status"] == "COMPLETED"
    time.sleep(0.5)
    assert db.scalar("SELECT settle_failures FROM transactions WHERE id = :i", i=str(poison)) == failures_max
    assert api.get(f"/transactions/{poison}", owner).json["status"] == "PENDING"
    assert api.wallet(owner, payee)["balance"] == sum(100 + n for n in range(5)) + 700 + 1
    # The owner may still cancel it.
    cancelled = api.post(f"/transactions/{poison}/cancel", owner)
    assert cancelled.status_code == 200, cancelled.json


def test_parking_is_logged_critical_and_counted_once(api, db, caplog):
    owner = api.signup()
    payee = api.funded_wallet(owner, 1)
    poison = _poison_deposit(db, owner, payee, hours_ahead=1)  # dated ahead: no worker's drain takes it
    failures_max = get_settings().settle_failures_before_park
    counted = INTENTS_PARKED._value.get()

    with caplog.at_level(logging.WARNING):
        for _ in range(failures_max):
            try:
                settle_or_bisect([poison])
            except AssertionError:
                pass
            else:
                raise AssertionError("settling the poison raised nothing")
        assert settle_or_bisect([poison]).skipped == 1  # parked: passed by, nothing raised

    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert [r.getMessage() for r in critical] == [
        f"intent parked: settling it failed {failures_max} times; it stays PENDING until an operator acts"
    ]
    assert critical[0].transaction_id == str(poison)
    assert INTENTS_PARKED._value.get() == counted + 1
