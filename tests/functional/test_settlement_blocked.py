"""One organisation whose treasury or clearing wallet cannot take a posting stops no one else's
settlement: the API refuses to lock or close such a wallet while it carries money or obligations,
and a batch that finds one anyway settles everyone else, leaves that organisation's obligations for
a later batch, and says so (an ERROR log line, the batch's `skipped`, a metric)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.functional.test_cross_org import currency_totals, scalar, system_balance, system_wallet


@pytest.fixture
def operator(api):
    return api.operator()


def _pay(api, sender, source, destination, amount) -> str:
    transaction = api.wait_final(sender, api.transfer(sender, source, destination, amount).json["id"])
    assert transaction["status"] == "COMPLETED", transaction
    return str(transaction["id"])


def _settled_by(transfer_id: str) -> str | None:
    return scalar(
        "SELECT settlement_batch_id::text FROM transactions WHERE parent_transaction_id = :id", id=transfer_id
    )


def _skipped_count(reason: str) -> float:
    labels = {"currency": "INR", "reason": reason}
    return REGISTRY.get_sample_value("vaultcraft_settlement_organizations_skipped_total", labels) or 0.0


def _skips(batch: dict[str, Any], *banks: Any) -> list[dict[str, Any]]:
    """The batch's skips of these banks (another test may have left an organisation blocked)."""
    organizations = {bank.organization_id for bank in banks}
    return [s for s in batch["skipped"] if s["organization_id"] in organizations]


def _status(api, user, wallet_id: str, status: str) -> Any:
    return api.patch(f"/wallets/{wallet_id}", user, json={"status": status})


def test_a_treasury_or_clearing_wallet_in_use_cannot_be_locked_or_closed(api, operator):
    a, b = api.signup(), api.signup()
    source_a, source_b = api.funded_wallet(a, 1_000), api.funded_wallet(b, 1_000)
    api.run_settlement(operator)
    # Each pays the other 100: both clearing wallets are at 0, yet two obligations are unsettled.
    _pay(api, a, source_a, api.create_wallet(b), 100)
    _pay(api, b, source_b, api.create_wallet(a), 100)
    treasury, clearing = system_wallet(a.organization_id, "treasury"), system_wallet(a.organization_id, "clearing")
    assert (treasury.balance, clearing.balance) == (-1_000, 0)

    for wallet in (treasury.id, clearing.id):
        for status in ("LOCKED", "CLOSED"):
            refused = _status(api, a, wallet, status)
            assert refused.status_code == 409, refused.json
            assert refused.json["error"]["code"] == "SYSTEM_WALLET_IN_USE"
            assert refused.json["error"]["details"]["unsettled_obligations"] == 2
    assert _status(api, a, treasury.id, "LOCKED").json["error"]["details"]["balance"] == -1_000
    assert system_wallet(a.organization_id, "treasury").status == "ACTIVE"

    api.run_settlement(operator)  # obligations settled: the clearing wallet is free, the treasury still holds money
    assert _status(api, a, clearing.id, "LOCKED").status_code == 200
    assert _status(api, a, clearing.id, "ACTIVE").status_code == 200
    assert _status(api, a, treasury.id, "LOCKED").status_code == 409
    # A treasury with nothing in it and nothing owed may be locked like any wallet.
    c = api.signup()
    empty_treasury = api.create_wallet(c, "SYSTEM", name="treasury")
    assert _status(api, c, empty_treasury, "LOCKED").status_code == 200


def test_one_closed_treasury_stops_no_one_elses_settlement(api, operator, db, caplog):
    a, b, c = (api.signup(f"Bank {name}") for name in "ABC")
    wallet_a, wallet_b = api.funded_wallet(a, 100_000), api.funded_wallet(b, 100_000)
    wallet_c = api.create_wallet(c)
    api.run_settlement(operator)
    a_to_b = _pay(api, a, wallet_a, wallet_b, 5_000)
    b_to_c = _pay(api, b, wallet_b, wallet_c, 2_000)
    c_to_a = _pay(api, c, wallet_c, wallet_a, 1_000)
    assert [system_balance(bank.organization_id, "clearing") for bank in (a, b, c)] == [4_000, -3_000, -1_000]
    # C never deposited: its treasury is empty, and closed behind the API's back.
    treasury_c = api.create_wallet(c, "SYSTEM", name="treasury")
    db.execute("UPDATE wallets SET status = 'CLOSED' WHERE id = :id", id=treasury_c)
    treasuries = {bank.organization_id: system_balance(bank.organization_id, "treasury") for bank in (a, b)}
    skipped_before = _skipped_count("TREASURY_NOT_ACTIVE")

    with caplog.at_level(logging.ERROR):
        first = api.run_settlement(operator)

    # A and B settle what they owe each other; everything involving C waits.
    assert first["transfer_count"] == 1
    assert {leg["organization_id"]: leg["net_position"] for leg in first["legs"]} == {
        a.organization_id: 5_000,
        b.organization_id: -5_000,
    }
    assert (_settled_by(a_to_b), _settled_by(b_to_c), _settled_by(c_to_a)) == (first["id"], None, None)
    assert {org: system_balance(org, "treasury") - before for org, before in treasuries.items()} == {
        a.organization_id: 5_000,
        b.organization_id: -5_000,
    }
    # What is left on the clearing wallets is exactly the unsettled obligations: A is owed 1,000 by C,
    # B owes C 2,000, C is owed 1,000 net.
    assert [system_balance(bank.organization_id, "clearing") for bank in (a, b, c)] == [-1_000, 2_000, -1_000]
    assert system_wallet(c.organization_id, "treasury").balance == 0
    assert all(total == 0 for total in currency_totals().values())

    [skip] = _skips(first, a, b, c)
    assert skip == {
        "organization_id": c.organization_id,
        "currency": "INR",
        "reason": "TREASURY_NOT_ACTIVE",
        "wallet_id": treasury_c,
        "wallet_status": "CLOSED",
        "obligation_count": 2,
        "obligation_amount": 3_000,
    }
    assert _skipped_count("TREASURY_NOT_ACTIVE") == skipped_before + 1
    alerts = [r for r in caplog.records if r.levelno >= logging.ERROR and "skipped" in r.getMessage()]
    assert [getattr(r, "organization_id", None) for r in alerts] == [c.organization_id]
    # C's admin sees the batch that skipped it, and why; A's admin sees A's leg and no one's skip.
    seen_by_c = api.get(f"/settlements/{first['id']}", c).json
    assert (seen_by_c["legs"], seen_by_c["skipped"]) == ([], [skip])
    seen_by_a = api.get(f"/settlements/{first['id']}", a).json
    assert ([leg["organization_id"] for leg in seen_by_a["legs"]], seen_by_a["skipped"]) == ([a.organization_id], [])

    for bank in (a, b, c):
        reconciliation = api.post("/reconciliation/run", bank, json={"mode": "FULL"})
        assert reconciliation.status_code == 201, reconciliation.json
        assert reconciliation.json["status"] == "CLEAN", reconciliation.json

    # Still closed: the next batch skips C again and settles nothing twice.
    again = api.run_settlement(operator)
    assert (again["transfer_count"], again["legs"], _skips(again, a, b, c)) == (0, [], [skip])

    db.execute("UPDATE wallets SET status = 'ACTIVE' WHERE id = :id", id=treasury_c)
    last = api.run_settlement(operator)
    assert (last["transfer_count"], _skips(last, a, b, c)) == (2, [])
    assert {leg["organization_id"]: leg["net_position"] for leg in last["legs"]} == {
        a.organization_id: -1_000,
        b.organization_id: 2_000,
        c.organization_id: -1_000,
    }
    assert _settled_by(b_to_c) == _settled_by(c_to_a) == last["id"]
    assert [system_balance(bank.organization_id, "clearing") for bank in (a, b, c)] == [0, 0, 0]
    assert system_wallet(c.organization_id, "treasury").balance == -1_000
    assert all(total == 0 for total in currency_totals().values())


def test_a_locked_clearing_wallet_is_skipped_by_the_scheduled_task_too(api, operator, db):
    from click.testing import CliRunner

    from ops.cli import main
    from tasks.settlement_batches import run_scheduled_settlement_batch

    a, b = api.signup(), api.signup()
    wallet_a = api.funded_wallet(a, 10_000)
    api.run_settlement(operator)
    transfer = _pay(api, a, wallet_a, api.create_wallet(b), 700)
    clearing_b = system_wallet(b.organization_id, "clearing").id
    db.execute("UPDATE wallets SET status = 'LOCKED' WHERE id = :id", id=clearing_b)

    result = run_scheduled_settlement_batch.apply().get()
    assert result["transfer_count"] == 0 and _settled_by(transfer) is None
    batch = api.get(f"/settlements/{result['batch_id']}", operator).json
    assert [(s["organization_id"], s["reason"]) for s in _skips(batch, a, b)] == [
        (b.organization_id, "CLEARING_NOT_ACTIVE")
    ]
    assert (system_balance(a.organization_id, "clearing"), system_balance(b.organization_id, "clearing")) == (700, -700)

    output = CliRunner().invoke(main, ["settle"])  # the command line says so too
    assert output.exit_code == 0, output.output
    assert f"SKIPPED {b.organization_id} INR: CLEARING_NOT_ACTIVE (LOCKED), 1 obligations of 700" in output.output

    db.execute("UPDATE wallets SET status = 'ACTIVE' WHERE id = :id", id=clearing_b)
    assert run_scheduled_settlement_batch.apply().get()["transfer_count"] == 1
    assert (system_balance(a.organization_id, "clearing"), system_balance(b.organization_id, "clearing")) == (0, 0)


def test_a_wallet_blocked_after_the_batch_first_looked_is_caught_under_its_lock(api, operator, db, monkeypatch):
    from ledger.clearing import batches
    from models import BatchTrigger
    from models.db import session_factory

    a, b = api.signup(), api.signup()
    wallet_a = api.funded_wallet(a, 10_000)
    api.run_settlement(operator)
    transfer = _pay(api, a, wallet_a, api.create_wallet(b), 300)
    treasury_b = api.create_wallet(b, "SYSTEM", name="treasury")
    db.execute("UPDATE wallets SET status = 'CLOSED' WHERE id = :id", id=treasury_b)
    monkeypatch.setattr(batches, "_blocked", lambda session: {})  # as if it closed a moment later

    with session_factory().begin() as session:
        batch = batches.run_batch(session, trigger=BatchTrigger.CLI).batch
        skips = _skips({"skipped": batch.skipped}, a, b)
    assert [(s["organization_id"], s["reason"], s["obligation_count"]) for s in skips] == [
        (b.organization_id, "TREASURY_NOT_ACTIVE", 1)
    ]
    assert _settled_by(transfer) is None
    assert (system_balance(a.organization_id, "clearing"), system_balance(b.organization_id, "clearing")) == (300, -300)
    db.execute("UPDATE wallets SET status = 'ACTIVE' WHERE id = :id", id=treasury_b)
