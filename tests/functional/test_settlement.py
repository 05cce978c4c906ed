"""Settlement batches: netting, posting, idempotency, concurrency, visibility."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from ledger.clearing.batches import run_batch
from models import BatchTrigger
from models.db import session_factory
from tests.functional.test_cross_org import currency_totals, entries_of, rows, scalar, system_balance


@pytest.fixture
def operator(api):
    return api.operator()


def _flush(api, operator) -> None:
    """Settle whatever earlier tests left, so this test's batches hold only its own traffic."""
    api.run_settlement(operator)


def _pay(api, sender, source, destination, amount) -> str:
    transaction = api.wait_final(sender, api.transfer(sender, source, destination, amount).json["id"])
    assert transaction["status"] == "COMPLETED", transaction
    return str(transaction["id"])


def _batch_of(transaction_id: str) -> str | None:
    return scalar("SELECT settlement_batch_id::text FROM transactions WHERE id = :id", id=transaction_id)


def _legs(batch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {leg["organization_id"]: leg for leg in batch["legs"]}


@pytest.fixture
def triangle(api, operator):
    """Three banks: A pays B 5,000, B pays C 2,000, C pays A 1,000, after earlier traffic is settled."""
    banks = [api.signup(f"Bank {name}") for name in "ABC"]
    wallets = [api.funded_wallet(bank, 100_000) for bank in banks]
    _flush(api, operator)
    a, b, c = banks
    transfers = [
        _pay(api, a, wallets[0], wallets[1], 5_000),
        _pay(api, b, wallets[1], wallets[2], 2_000),
        _pay(api, c, wallets[2], wallets[0], 1_000),
    ]
    return banks, wallets, transfers


def test_a_batch_nets_positions_and_empties_the_clearing_wallets(api, operator, triangle):
    banks, _, transfers = triangle
    a, b, c = banks
    treasuries_before = {bank.organization_id: system_balance(bank.organization_id, "treasury") for bank in banks}
    assert [system_balance(bank.organization_id, "clearing") for bank in banks] == [4_000, -3_000, -1_000]

    batch = api.run_settlement(operator)
    assert batch["status"] == "COMPLETED" and batch["trigger"] == "OPERATOR"
    assert batch["transfer_count"] == 3
    legs = _legs(batch)
    assert {org: (leg["net_position"], leg["direction"]) for org, leg in legs.items()} == {
        a.organization_id: (4_000, "PAY"),
        b.organization_id: (-3_000, "RECEIVE"),
        c.organization_id: (-1_000, "RECEIVE"),
    }
    assert (legs[a.organization_id]["sent_amount"], legs[a.organization_id]["received_amount"]) == (5_000, 1_000)
    [total] = batch["totals"]
    assert (total["currency"], total["gross_amount"], total["settled_amount"]) == ("INR", 8_000, 4_000)

    for bank in banks:
        leg = legs[bank.organization_id]
        assert system_balance(bank.organization_id, "clearing") == 0
        moved = system_balance(bank.organization_id, "treasury") - treasuries_before[bank.organization_id]
        assert moved == leg["net_position"]
        # One SETTLEMENT posting per organisation, a DEBIT and a CREDIT between its own two SYSTEM wallets.
        posting = entries_of(leg["transaction_id"])
        assert sorted(w for w, _, _ in posting) == sorted([leg["treasury_wallet_id"], leg["clearing_wallet_id"]])
        assert {amount for _, _, amount in posting} == {abs(leg["net_position"])}
        assert scalar("SELECT type FROM transactions WHERE id = :id", id=leg["transaction_id"]) == "SETTLEMENT"
    for transfer_id in transfers:
        assert _batch_of(transfer_id) == batch["id"]
        assert (
            scalar(
                "SELECT settlement_batch_id::text FROM transactions WHERE parent_transaction_id = :id", id=transfer_id
            )
            == batch["id"]
        )
    assert all(value == 0 for value in currency_totals().values())
    assert not rows(
        "SELECT w.id FROM wallets w LEFT JOIN ledger_entries e ON e.wallet_id = w.id GROUP BY w.id"
        " HAVING w.balance <> coalesce(sum(CASE e.direction WHEN 'CREDIT' THEN e.amount ELSE -e.amount END), 0)"
        " OR w.version <> count(e.id)"
    )


def test_a_batch_run_twice_settles_nothing_twice(api, operator, triangle):
    banks, _, transfers = triangle
    first = api.run_settlement(operator)
    treasuries = [system_balance(bank.organization_id, "treasury") for bank in banks]
    entries = scalar("SELECT count(*) FROM ledger_entries")

    second = api.run_settlement(operator)
    assert second["id"] != first["id"]
    assert second["transfer_count"] == 0 and second["legs"] == [] and second["totals"] == []
    assert second["window_start"] == first["cut_off"]
    assert [system_balance(bank.organization_id, "treasury") for bank in banks] == treasuries
    assert scalar("SELECT count(*) FROM ledger_entries") == entries
    assert all(_batch_of(t) == first["id"] for t in transfers)

    # The same cut-off asked for again is the same batch, not a new one.
    again = api.post("/settlements/run", operator, json={"cut_off": first["cut_off"]})
    assert again.status_code == 200 and again.json["id"] == first["id"]
    earlier = api.post("/settlements/run", operator, json={"cut_off": "2001-01-01T00:00:00+00:00"})
    assert (earlier.status_code, earlier.json["error"]["code"]) == (409, "CUT_OFF_ALREADY_SETTLED")
    future = api.post("/settlements/run", operator, json={"cut_off": "2999-01-01T00:00:00+00:00"})
    assert (future.status_code, future.json["error"]["code"]) == (422, "CUT_OFF_IN_FUTURE")
    assert api.post("/settlements/run", operator, json={"cut_off": "yesterday"}).status_code == 422


def test_a_batch_with_no_traffic_posts_nothing(api, operator):
    _flush(api, operator)
    entries, transactions = scalar("SELECT count(*) FROM ledger_entries"), scalar("SELECT count(*) FROM transactions")
    batch = api.run_settlement(operator)
    assert (batch["transfer_count"], batch["legs"], batch["totals"]) == (0, [], [])
    assert scalar("SELECT count(*) FROM ledger_entries") == entries
    assert scalar("SELECT count(*) FROM transactions") == transactions
    assert api.get(f"/settlements/{batch['id']}", operator).json["id"] == batch["id"]


def test_two_batches_at_once_settle_each_transfer_once(api, operator, triangle):
    banks, _, transfers = triangle
    treasuries = {bank.organization_id: system_balance(bank.organization_id, "treasury") for bank in banks}
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(4)

    def run():
        barrier.wait()
        results.append(api.run_settlement(operator))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert sorted(r["transfer_count"] for r in results) == [0, 0, 0, 3]
    [settling] = [r for r in results if r["transfer_count"]]
    assert all(_batch_of(t) == settling["id"] for t in transfers)
    moved = {org: system_balance(org, "treasury") - before for org, before in treasuries.items()}
    assert moved == {org: leg["net_position"] for org, leg in _legs(settling).items()}
    assert [system_balance(bank.organization_id, "clearing") for bank in banks] == [0, 0, 0]
    assert (
        scalar(
            "SELECT count(*) FROM transactions"
            " WHERE type = 'SETTLEMENT' AND organization_id = ANY(CAST(:orgs AS uuid[]))",
            orgs=[bank.organization_id for bank in banks],
        )
        == 3
    )


def test_traffic_arriving_during_a_batch_lands_in_the_next_one(api, operator, triangle):
    banks, wallets, transfers = triangle
    a, b, _ = banks
    with session_factory().begin() as session:
        run = run_batch(session, trigger=BatchTrigger.CLI)  # holds its locks until this block commits
        assert run.batch.transfer_count == 3
        late = api.transfer(a, wallets[0], wallets[1], 700)
        assert late.status_code == 202
        time.sleep(0.5)  # the worker is now waiting for the clearing wallets the batch holds
    late_transfer = api.wait_final(a, late.json["id"])
    assert late_transfer["status"] == "COMPLETED"
    assert _batch_of(late_transfer["id"]) is None
    assert all(_batch_of(t) == str(run.batch.id) for t in transfers)
    assert (system_balance(a.organization_id, "clearing"), system_balance(b.organization_id, "clearing")) == (700, -700)

    following = api.run_settlement(operator)
    assert following["window_start"] == run.batch.cut_off.isoformat()
    assert following["transfer_count"] == 1
    assert _batch_of(late_transfer["id"]) == following["id"]
    assert {org: leg["net_position"] for org, leg in _legs(following).items()} == {
        a.organization_id: 700,
        b.organization_id: -700,
    }
    assert [system_balance(bank.organization_id, "clearing") for bank in banks] == [0, 0, 0]


def test_a_batch_that_fails_midway_leaves_nothing(api, operator, triangle):
    banks, _, transfers = triangle
    before = {bank.organization_id: system_balance(bank.organization_id, "treasury") for bank in banks}
    batches = scalar("SELECT count(*) FROM settlement_batches")
    with pytest.raises(RuntimeError), session_factory().begin() as session:
        run_batch(session, trigger=BatchTrigger.CLI)
        raise RuntimeError("crash after posting, before commit")
    assert scalar("SELECT count(*) FROM settlement_batches") == batches
    assert all(_batch_of(t) is None for t in transfers)
    assert {org: system_balance(org, "treasury") for org in before} == before
    assert [system_balance(bank.organization_id, "clearing") for bank in banks] == [4_000, -3_000, -1_000]


def test_who_sees_and_runs_batches(api, operator, triangle):
    banks, _, _ = triangle
    a = banks[0]
    batch = api.run_settlement(operator)
    outsider = api.signup("Not In This Batch")
    member = api.add_user(a)
    admin = api.add_user(a, "ADMIN")

    for user in (a, admin):
        seen = api.get(f"/settlements/{batch['id']}", user)
        assert seen.status_code == 200
        assert [leg["organization_id"] for leg in seen.json["legs"]] == [a.organization_id]  # only their own
        assert batch["id"] in [item["id"] for item in api.get("/settlements", user).json["items"]]
    assert len(api.get(f"/settlements/{batch['id']}", operator).json["legs"]) >= 3
    for user in (outsider, member):
        response = api.get(f"/settlements/{batch['id']}", user)
        assert (response.status_code, response.json["error"]["code"]) == (404, "SETTLEMENT_BATCH_NOT_FOUND")
    assert batch["id"] not in [item["id"] for item in api.get("/settlements", outsider).json["items"]]
    assert api.get("/settlements", member).status_code == 403
    assert api.get(f"/settlements/{uuid.uuid4()}", operator).status_code == 404

    for user in (a, admin, member, outsider):
        response = api.post("/settlements/run", user, json={})
        assert (response.status_code, response.json["error"]["code"]) == (403, "OPERATOR_REQUIRED")
    assert api.post("/settlements/run", json={}).status_code == 401
    page = api.get("/settlements?limit=1", operator).json
    assert len(page["items"]) == 1 and page["next_cursor"]


def test_the_scheduled_task_and_the_cli_run_batches(api, operator, triangle):
    from click.testing import CliRunner

    from ops.cli import main
    from tasks.settlement_batches import run_scheduled_settlement_batch

    banks, _, transfers = triangle
    result = run_scheduled_settlement_batch.apply().get()
    assert result["transfer_count"] == 3
    assert all(_batch_of(t) == result["batch_id"] for t in transfers)
    a, b, _ = banks
    _pay(api, b, api.funded_wallet(b, 500), api.create_wallet(a), 250)
    output = CliRunner().invoke(main, ["settle"])
    assert output.exit_code == 0, output.output
    assert "1 transfers" in output.output and "RECEIVE" in output.output and "PAY" in output.output
    assert [system_balance(bank.organization_id, "clearing") for bank in banks] == [0, 0, 0]


def _own_totals(legs: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """What an organisation's own legs add up to: its transfer count and its totals per currency."""
    totals = [
        {
            "currency": leg["currency"],
            "gross_amount": leg["sent_amount"] + leg["received_amount"],
            "settled_amount": abs(leg["net_position"]),
            "transfer_count": leg["transfer_count"],
        }
        for leg in sorted(legs, key=lambda leg: leg["currency"])
    ]
    return sum(leg["transfer_count"] for leg in legs), totals


def test_each_organisation_sees_only_its_own_legs_and_totals(api, operator, triangle):
    from models import OutboxEvent

    banks, _, _ = triangle
    batch = api.run_settlement(operator)
    expected = {  # (legs' organisations, transfer count, gross, settled) per bank of the triangle
        banks[0].organization_id: (2, 6_000, 4_000),
        banks[1].organization_id: (2, 7_000, 3_000),
        banks[2].organization_id: (2, 3_000, 1_000),
    }
    for bank in banks:
        admin = api.add_user(bank, "ADMIN")
        for user in (bank, admin):
            read = api.get(f"/settlements/{batch['id']}", user).json
            [listed] = [b for b in api.get("/settlements", user).json["items"] if b["id"] == batch["id"]]
            for seen in (read, listed):
                assert [leg["organization_id"] for leg in seen["legs"]] == [bank.organization_id]
                count, totals = _own_totals(seen["legs"])
                assert (seen["transfer_count"], seen["totals"]) == (count, totals)
                own_count, gross, settled = expected[bank.organization_id]
                assert totals == [
                    {"currency": "INR", "gross_amount": gross, "settled_amount": settled, "transfer_count": own_count}
                ]
                assert seen["skipped"] == []

    # The operator sees every leg and the platform's totals.
    for seen in (
        api.get(f"/settlements/{batch['id']}", operator).json,
        next(b for b in api.get("/settlements", operator).json["items"] if b["id"] == batch["id"]),
        batch,
    ):
        assert {leg["organization_id"] for leg in seen["legs"]} == set(expected)
        assert seen["transfer_count"] == 3
        assert seen["totals"] == [
            {"currency": "INR", "gross_amount": 8_000, "settled_amount": 4_000, "transfer_count": 3}
        ]

    # Each organisation's event and audit row carry its own legs and totals, addressed to it alone.
    with session_factory().begin() as session:
        events = session.query(OutboxEvent).filter(OutboxEvent.aggregate_id == batch["id"]).all()
        assert sorted(str(o) for e in events for o in e.organization_ids) == sorted(expected)
        for event in events:
            [organization_id] = [str(o) for o in event.organization_ids]
            assert [leg["organization_id"] for leg in event.payload["legs"]] == [organization_id]
            count, totals = _own_totals(event.payload["legs"])
            assert (event.payload["transfer_count"], event.payload["totals"]) == (count, totals)
            assert {str(w) for w in event.wallet_ids} == {
                event.payload["legs"][0]["treasury_wallet_id"],
                event.payload["legs"][0]["clearing_wallet_id"],
            }
    for bank in banks:
        [row] = api.get(f"/audit-logs?target_id={batch['id']}", bank).json["items"]
        count, gross, settled = expected[bank.organization_id]
        assert row["after"]["transfer_count"] == count
        assert row["after"]["totals"] == [
            {"currency": "INR", "gross_amount": gross, "settled_amount": settled, "transfer_count": count}
        ]
