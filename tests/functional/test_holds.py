"""Holds (two-phase transfers) and the three balances, against the real worker."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.client import ApiClient, User
from tests.concurrency import race

HOLD_FINAL = {"HELD", "FAILED", "CAPTURED", "VOIDED", "EXPIRED"}


def hold(api: ApiClient, user: User, source: str, destination: str, amount: int, **extra: Any) -> Any:
    body = {"source_wallet_id": source, "destination_wallet_id": destination, "amount": amount, **extra}
    return api.post("/holds", user, json=body)


def held(api: ApiClient, user: User, source: str, destination: str, amount: int, **extra: Any) -> dict[str, Any]:
    response = hold(api, user, source, destination, amount, **extra)
    assert response.status_code == 202, response.json
    assert response.json["status"] == "PENDING"
    return wait_hold(api, user, response.json["id"])


def wait_hold(api: ApiClient, user: User, hold_id: str) -> dict[str, Any]:
    response = api.get(f"/holds/{hold_id}?wait=10", user)
    assert response.status_code == 200, response.json
    return dict(response.json or {})


def capture(api: ApiClient, user: User, hold_id: str, **body: Any) -> Any:
    key = body.pop("key", None)
    headers = {"Idempotency-Key": key} if key else {}
    return api.post(f"/holds/{hold_id}/capture", user, json=body, headers=headers)


def amounts(api: ApiClient, user: User, wallet_id: str) -> tuple[int, int, int]:
    wallet = api.wallet(user, wallet_id)
    return wallet["balance"], wallet["held_amount"], wallet["available_balance"]


def reconciled_clean(api: ApiClient, user: User) -> dict[str, Any]:
    run = api.post("/reconciliation/run", user, json={"mode": "FULL"}).json
    return dict(run or {})


def test_a_hold_reserves_without_posting_and_debits_see_only_the_available(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    found = held(api, owner, source, destination, 7_000)
    assert (found["status"], found["remaining_amount"], found["captured_amount"]) == ("HELD", 7_000, 0)
    assert found["expires_at"] is not None
    assert amounts(api, owner, source) == (10_000, 7_000, 3_000)
    assert api.get(f"/wallets/{source}/ledger", owner).json["items"][0]["direction"] == "CREDIT"  # the deposit only

    too_much = api.wait_final(owner, api.transfer(owner, source, destination, 3_001).json["id"])
    assert (too_much["status"], too_much["failure_reason"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    second = held(api, owner, source, destination, 3_001)
    assert (second["status"], second["failure_reason"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    fits = api.wait_final(owner, api.transfer(owner, source, destination, 3_000).json["id"])
    assert fits["status"] == "COMPLETED"
    assert amounts(api, owner, source) == (7_000, 7_000, 0)
    assert reconciled_clean(api, owner)["status"] == "CLEAN"


def test_partial_capture_then_void_releases_the_rest(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    found = held(api, owner, source, destination, 6_000)

    accepted = capture(api, owner, found["id"], amount=2_500, key="cap-1")
    assert accepted.status_code == 202, accepted.json
    assert (accepted.json["type"], accepted.json["hold_id"]) == ("CAPTURE", found["id"])
    assert capture(api, owner, found["id"], amount=2_500, key="cap-1").json["id"] == accepted.json["id"]  # replay
    captured = api.wait_final(owner, accepted.json["id"])
    assert captured["status"] == "COMPLETED"
    entries = api.get(f"/transactions/{captured['id']}/ledger", owner).json["items"]
    assert sorted((e["direction"], e["amount"]) for e in entries) == [("CREDIT", 2_500), ("DEBIT", 2_500)]
    assert amounts(api, owner, source) == (7_500, 3_500, 4_000)
    assert amounts(api, owner, destination) == (2_500, 0, 2_500)

    over = capture(api, owner, found["id"], amount=3_501)
    assert (over.status_code, over.json["error"]["code"]) == (422, "CAPTURE_EXCEEDS_HOLD")
    voided = api.post(f"/holds/{found['id']}/void", owner)
    assert voided.status_code == 202
    assert (voided.json["status"], voided.json["remaining_amount"], voided.json["captured_amount"]) == (
        "VOIDED",
        0,
        2_500,
    )
    assert voided.json["captures"] == [captured["id"]]
    assert amounts(api, owner, source) == (7_500, 0, 7_500)
    again = api.post(f"/holds/{found['id']}/void", owner)
    assert (again.status_code, again.json["status"]) == (202, "VOIDED")
    late = capture(api, owner, found["id"], amount=1)
    assert (late.status_code, late.json["error"]["code"]) == (409, "HOLD_NOT_ACTIVE")
    assert reconciled_clean(api, owner)["status"] == "CLEAN"


def test_captures_to_the_end_and_final_capture_end_the_hold(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    whole = held(api, owner, source, destination, 1_000)
    everything = api.wait_final(owner, capture(api, owner, whole["id"]).json["id"])
    assert (everything["status"], everything["amount"]) == ("COMPLETED", 1_000)
    assert wait_hold(api, owner, whole["id"])["status"] == "CAPTURED"

    partial = held(api, owner, source, destination, 4_000)
    final = api.wait_final(owner, capture(api, owner, partial["id"], amount=1_000, final=True).json["id"])
    assert final["status"] == "COMPLETED"
    ended = wait_hold(api, owner, partial["id"])
    assert (ended["status"], ended["captured_amount"], ended["remaining_amount"]) == ("CAPTURED", 1_000, 0)
    assert amounts(api, owner, source) == (8_000, 0, 8_000)


def test_holds_need_the_rights_of_a_transfer_and_refuse_system_wallets(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    member = api.add_user(owner)
    assert hold(api, member, source, destination, 100).status_code == 404
    treasury = next(w["id"] for w in api.get("/wallets/?type=SYSTEM", owner).json["items"])
    refused = hold(api, owner, source, treasury, 100)
    assert (refused.status_code, refused.json["error"]["code"]) == (422, "SYSTEM_WALLET")
    for bad in (0, 2_592_001):
        assert hold(api, owner, source, destination, 100, expires_in=bad).status_code == 422


def test_a_wallet_with_open_holds_does_not_close(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    found = held(api, owner, source, destination, 100)
    for wallet_id in (destination, source):
        refused = api.patch(f"/wallets/{wallet_id}", owner, json={"status": "CLOSED"})
        assert (refused.status_code, refused.json["error"]["code"]) == (409, "WALLET_HAS_OPEN_HOLDS")
    assert api.patch(f"/wallets/{source}", owner, json={"status": "LOCKED"}).status_code == 200
    assert api.post(f"/holds/{found['id']}/void", owner).json["status"] == "VOIDED"  # on a LOCKED wallet
    assert api.patch(f"/wallets/{destination}", owner, json={"status": "CLOSED"}).status_code == 200


def test_expiry_by_the_sweeper_when_the_eta_task_is_lost(api, db):
    from tasks.holds import sweep_expired_holds

    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    found = held(api, owner, source, destination, 400, expires_in=60)
    # The ETA task is 60 s away; the hold is made due now, as if that task had been lost.
    db.execute("UPDATE holds SET expires_at = now() - interval '1 second' WHERE id = :id", id=found["id"])
    late = capture(api, owner, found["id"], amount=100)
    assert (late.status_code, late.json["error"]["code"]) == (409, "HOLD_EXPIRED")
    assert sweep_expired_holds() >= 1
    assert sweep_expired_holds() == 0 or wait_hold(api, owner, found["id"])["status"] == "EXPIRED"
    assert wait_hold(api, owner, found["id"])["status"] == "EXPIRED"
    assert amounts(api, owner, source) == (1_000, 0, 1_000)
    assert api.post(f"/holds/{found['id']}/void", owner).json["error"]["code"] == "HOLD_EXPIRED"
    assert reconciled_clean(api, owner)["status"] == "CLEAN"


def test_expiry_on_time_by_its_eta_task(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    found = held(api, owner, source, destination, 400, expires_in=1)
    for _ in range(40):
        if wait_hold(api, owner, found["id"])["status"] == "EXPIRED":
            break
        time.sleep(0.25)
    assert wait_hold(api, owner, found["id"])["status"] == "EXPIRED"
    assert amounts(api, owner, source) == (1_000, 0, 1_000)


def test_reconciliation_names_a_held_amount_that_drifted(api, db):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    held(api, owner, source, destination, 300)
    db.execute("UPDATE wallets SET held_amount = held_amount + 1 WHERE id = :id", id=source)
    run = reconciled_clean(api, owner)
    finding = next(f for f in run["findings"] if f["check"] == "HELD_MISMATCH")
    assert (finding["wallet_id"], finding["expected"], finding["actual"]) == (source, 300, 301)
    db.execute("UPDATE wallets SET held_amount = held_amount - 1 WHERE id = :id", id=source)


def test_cross_organisation_capture_goes_through_the_clearing_wallets(api):
    payer = api.signup()
    merchant = api.signup()
    source = api.funded_wallet(payer, 5_000)
    till = api.create_wallet(merchant)
    found = held(api, payer, source, till, 2_000)
    assert api.get(f"/holds/{found['id']}", merchant).status_code == 200  # the payee sees it
    done = api.wait_final(merchant, capture(api, merchant, found["id"], amount=1_500).json["id"])
    assert done["status"] == "COMPLETED"
    positions = {w["name"]: w["balance"] for w in api.get("/wallets/?type=SYSTEM", payer).json["items"]}
    assert positions["clearing"] == 1_500
    assert amounts(api, merchant, till) == (1_500, 0, 1_500)
    assert api.post(f"/holds/{found['id']}/void", merchant).json["status"] == "VOIDED"
    assert amounts(api, payer, source) == (3_500, 0, 3_500)


@pytest.mark.parametrize("round_", range(4))
def test_racing_partial_captures_never_exceed_the_hold(api, round_):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    found = held(api, owner, source, destination, 1_000)
    answers = race(*[lambda: capture(api, owner, found["id"], amount=600) for _ in range(3)])
    accepted = [a for a in answers if a.status_code == 202]
    assert len(accepted) == 1, [a.json for a in answers]
    assert all(a.json["error"]["code"] == "CAPTURE_EXCEEDS_HOLD" for a in answers if a.status_code != 202)
    assert api.wait_final(owner, accepted[0].json["id"])["status"] == "COMPLETED"
    assert amounts(api, owner, source) == (9_400, 400, 9_000)
    assert reconciled_clean(api, owner)["status"] == "CLEAN"


@pytest.mark.parametrize("round_", range(4))
def test_capture_against_void_ends_the_hold_once(api, round_):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    found = held(api, owner, source, destination, 1_000)
    captured, voided = race(
        lambda: capture(api, owner, found["id"], amount=1_000),
        lambda: api.post(f"/holds/{found['id']}/void", owner),
    )
    assert voided.status_code in (202, 409)
    ended = wait_hold(api, owner, found["id"])
    outcome = api.wait_final(owner, captured.json["id"]) if captured.status_code == 202 else None
    for _ in range(40):
        ended = wait_hold(api, owner, found["id"])
        if ended["status"] != "HELD":
            break
    if ended["status"] == "CAPTURED":
        assert outcome is not None and outcome["status"] == "COMPLETED"
        assert voided.status_code == 409
        assert amounts(api, owner, source) == (9_000, 0, 9_000)
    else:
        assert ended["status"] == "VOIDED"
        assert outcome is None or (outcome["status"], outcome["failure_reason"]) == ("FAILED", "HOLD_NOT_ACTIVE")
        assert amounts(api, owner, source) == (10_000, 0, 10_000)
    assert reconciled_clean(api, owner)["status"] == "CLEAN"


def test_a_capture_delivered_three_times_posts_once(api, unpublished, db):
    from tasks.settlement import settle_once

    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    found = held(api, owner, source, destination, 1_000)
    unpublished.start()
    accepted = capture(api, owner, found["id"], amount=700)
    assert accepted.status_code == 202
    capture_id = uuid.UUID(accepted.json["id"])
    race(*[lambda: settle_once([capture_id]) for _ in range(3)])
    assert api.wait_final(owner, str(capture_id))["status"] == "COMPLETED"
    assert db.scalar("SELECT count(*) FROM ledger_entries WHERE transaction_id = :id", id=str(capture_id)) == 2
    assert amounts(api, owner, source) == (9_300, 300, 9_000)
    assert reconciled_clean(api, owner)["status"] == "CLEAN"


@pytest.mark.parametrize("round_", range(3))
def test_capture_against_expiry_ends_the_hold_once(api, unpublished, db, round_):
    from tasks.holds import sweep_expired_holds
    from tasks.settlement import settle_once

    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    found = held(api, owner, source, destination, 1_000, expires_in=60)
    unpublished.start()
    accepted = capture(api, owner, found["id"], amount=600)
    assert accepted.status_code == 202
    db.execute("UPDATE holds SET expires_at = now() WHERE id = :id", id=found["id"])
    capture_id = uuid.UUID(accepted.json["id"])
    race(lambda: settle_once([capture_id]), sweep_expired_holds)
    sweep_expired_holds()
    outcome = api.wait_final(owner, str(capture_id))
    ended = wait_hold(api, owner, found["id"])
    assert ended["status"] == "EXPIRED"
    if outcome["status"] == "COMPLETED":  # settled before the expiry: it took 600, the rest was released
        assert (ended["captured_amount"], amounts(api, owner, source)) == (600, (9_400, 0, 9_400))
    else:
        assert outcome["failure_reason"] == "HOLD_EXPIRED"
        assert (ended["captured_amount"], amounts(api, owner, source)) == (0, (10_000, 0, 10_000))
    assert reconciled_clean(api, owner)["status"] == "CLEAN"


def test_two_voids_at_once_release_once(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    found = held(api, owner, source, destination, 2_000)
    answers = race(*[lambda: api.post(f"/holds/{found['id']}/void", owner) for _ in range(2)])
    assert [(a.status_code, a.json["status"]) for a in answers] == [(202, "VOIDED")] * 2
    assert amounts(api, owner, source) == (10_000, 0, 10_000)
    assert reconciled_clean(api, owner)["status"] == "CLEAN"


def test_each_ending_is_an_event(api, db):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    voided = held(api, owner, source, destination, 2_000)
    captured = held(api, owner, source, destination, 1_000)
    failed = held(api, owner, source, destination, 100_000)
    api.post(f"/holds/{voided['id']}/void", owner)
    api.wait_final(owner, capture(api, owner, captured["id"]).json["id"])

    def types(hold_id: str) -> list[str]:
        rows = db.rows(
            "SELECT event_type FROM outbox_events WHERE aggregate_type = 'hold' AND aggregate_id = :id ORDER BY id",
            id=hold_id,
        )
        return [row[0] for row in rows]

    assert types(voided["id"]) == ["hold.held", "hold.voided"]
    assert types(captured["id"]) == ["hold.held", "hold.captured"]
    assert types(failed["id"]) == ["hold.failed"]
    assert (
        db.scalar(
            "SELECT count(*) FROM outbox_events WHERE aggregate_id IN (:a, :b, :c) AND event_type LIKE 'transaction.%'",
            a=voided["id"],
            b=captured["id"],
            c=failed["id"],
        )
        == 0
    )
