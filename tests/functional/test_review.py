"""Fraud review: a transfer that trips one of its organisation's fraud rules waits IN_REVIEW with
its reasons, its amount held on the source, until an OWNER/ADMIN other than its creator approves it
(then it settles under the normal checks) or rejects it, or the review window ends."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.client import ApiClient, User, bulk_item

RULES_PATH = "/organizations/fraud-rules"


def set_rules(api: ApiClient, user: User, **body: Any) -> dict[str, Any]:
    response = api.request("PUT", RULES_PATH, user, json=body)
    assert response.status_code == 200, response.json
    return dict(json_of(response))


def json_of(response: Any) -> Any:
    """A response's JSON, typed as anything (the test client says it may be None)."""
    return response.json


def amounts(api: ApiClient, user: User, wallet_id: str) -> tuple[int, int, int]:
    wallet = api.wallet(user, wallet_id)
    return wallet["balance"], wallet["held_amount"], wallet["available_balance"]


def settled(api: ApiClient, user: User, source: str, destination: str, amount: int) -> dict[str, Any]:
    response = api.transfer(user, source, destination, amount)
    assert response.status_code == 202, response.json
    return wait_settled(api, user, json_of(response)["id"])


def wait_settled(api: ApiClient, user: User, transaction_id: str) -> dict[str, Any]:
    """Until the transfer leaves PENDING (IN_REVIEW is where a stopped one rests)."""
    for _ in range(30):
        found = json_of(api.get(f"/transactions/{transaction_id}?wait=2", user))
        if found["status"] != "PENDING":
            return dict(found)
    raise AssertionError(f"transaction {transaction_id} still PENDING")


def entries(api: ApiClient, user: User, transaction_id: str) -> list[dict[str, Any]]:
    return list(json_of(api.get(f"/transactions/{transaction_id}/ledger", user))["items"])


def review(api: ApiClient, user: User, transaction_id: str, decision: str, note: str | None = "checked"):
    return api.post(f"/transactions/{transaction_id}/review", user, json={"decision": decision, "note": note})


def in_review(api: ApiClient, owner: User, amount: int = 501) -> tuple[str, str, dict[str, Any]]:
    """A funded wallet (10,000) and a transfer of `amount` from it stopped by review_amount_over=500."""
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    set_rules(api, owner, review_amount_over=500)
    stopped = settled(api, owner, source, destination, amount)
    assert (stopped["status"], stopped["review_reasons"]) == ("IN_REVIEW", ["review_amount_over"]), stopped
    return source, destination, stopped


def event_types(db, transaction_id: str) -> list[str]:
    rows = db.rows(
        "SELECT event_type FROM outbox_events WHERE aggregate_id = :id ORDER BY id",
        id=transaction_id,
    )
    return [r[0] for r in rows]


def test_rules_are_read_and_replaced_by_owner_and_admin_only(api):
    owner = api.signup()
    member = api.add_user(owner, "MEMBER")
    assert api.get(RULES_PATH, owner).json["review_amount_over"] is None
    assert (
        set_rules(api, owner, review_amount_over=500, amount_over_wallet_p95_factor=2.5)
        == api.get(RULES_PATH, owner).json
    )
    assert api.get(RULES_PATH, owner).json["amount_over_wallet_p95_factor"] == 2.5
    assert api.get(RULES_PATH, member).status_code == 403
    assert api.request("PUT", RULES_PATH, member, json={"review_amount_over": 1}).status_code == 403
    for bad in ({"review_amount_over": 0}, {"review_amount_over": 1.5}, {"amount_over_wallet_p95_factor": 0}):
        assert api.request("PUT", RULES_PATH, owner, json=bad).status_code == 422, bad


def test_amount_over_holds_the_transfer_in_review(api, db):
    owner = api.signup()
    source, destination, stopped = in_review(api, owner)
    assert stopped["review_started_at"] is not None and stopped["completed_at"] is None
    assert entries(api, owner, stopped["id"]) == []
    assert amounts(api, owner, source) == (10_000, 501, 9_499)
    assert settled(api, owner, source, destination, 500)["status"] == "COMPLETED"
    listed = api.get("/reviews", owner).json
    assert [t["id"] for t in listed["items"]] == [stopped["id"]] and listed["next_cursor"] is None
    assert api.get("/reviews", api.signup()).json["items"] == []  # another organisation sees none
    assert event_types(db, stopped["id"]) == ["transaction.review_required"]
    audit = api.get("/audit-logs?action=transaction.review_required", owner).json["items"]
    assert [(r["target_id"], r["actor_label"]) for r in audit] == [(stopped["id"], "system:review")]
    # Cancelling is for PENDING intents: a transfer in review is decided.
    assert api.post(f"/transactions/{stopped['id']}/cancel", owner).status_code == 409


def test_a_transfer_to_a_new_destination(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    known, new = api.create_wallet(owner), api.create_wallet(owner)
    assert settled(api, owner, source, known, 300)["status"] == "COMPLETED"
    set_rules(api, owner, new_destination_amount_over=100)
    assert settled(api, owner, source, known, 300)["status"] == "COMPLETED"  # paid before
    assert settled(api, owner, source, new, 100)["status"] == "COMPLETED"  # not over
    newer = api.create_wallet(owner)
    stopped = settled(api, owner, source, newer, 101)
    assert (stopped["status"], stopped["review_reasons"]) == ("IN_REVIEW", ["new_destination_amount_over"])
    assert amounts(api, owner, source) == (10_000 - 700, 101, 10_000 - 700 - 101)


def test_an_amount_far_above_the_wallets_usual(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 100_000)
    destination = api.create_wallet(owner)
    set_rules(api, owner, amount_over_wallet_p95_factor=2)
    # Without history (fewer than 5 completed transfers) the rule does not apply.
    assert settled(api, owner, source, destination, 100)["status"] == "COMPLETED"
    for _ in range(4):
        assert settled(api, owner, source, destination, 100)["status"] == "COMPLETED"
    assert settled(api, owner, source, destination, 200)["status"] == "COMPLETED"  # 2 x p95 (100), not over
    stopped = settled(api, owner, source, destination, 500)
    assert (stopped["status"], stopped["review_reasons"]) == ("IN_REVIEW", ["amount_over_wallet_p95_factor"])
    assert amounts(api, owner, source)[1] == 500


def test_max_transfers_per_10_minutes_counts_earlier_items_of_one_bulk(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    set_rules(api, owner, max_transfers_per_wallet_per_10_minutes=2)
    response = api.transfer_batch(owner, [bulk_item(source, destination, 10 * (n + 1)) for n in range(5)])
    assert response.status_code == 202, response.json
    ids = [item["transaction"]["id"] for item in response.json["items"]]
    finals = [wait_settled(api, owner, i) for i in ids]
    assert [f["status"] for f in finals] == ["COMPLETED", "COMPLETED", "IN_REVIEW", "IN_REVIEW", "IN_REVIEW"]
    assert {tuple(f["review_reasons"]) for f in finals[2:]} == {("max_transfers_per_wallet_per_10_minutes",)}
    assert amounts(api, owner, source) == (10_000 - 30, 30 + 40 + 50, 10_000 - 30 - 120)
    # Those in review count too: the next transfer from the wallet is reviewed as well.
    assert settled(api, owner, source, destination, 1)["status"] == "IN_REVIEW"


def test_a_second_admin_approves_and_it_settles_with_entries(api, db):
    owner = api.signup()
    admin = api.add_user(owner, "ADMIN")
    source, destination, stopped = in_review(api, owner)
    assert review(api, owner, stopped["id"], "APPROVE").json["error"]["code"] == "FOUR_EYES"
    assert review(api, owner, stopped["id"], "APPROVE").status_code == 403
    member = api.add_user(owner, "MEMBER")
    assert review(api, member, stopped["id"], "APPROVE").status_code in (403, 404)
    outsider = api.signup()
    assert review(api, outsider, stopped["id"], "APPROVE").status_code == 404

    response = review(api, admin, stopped["id"], "APPROVE", "known customer")
    assert response.status_code == 200, response.json
    assert (response.json["review_decision"], response.json["reviewed_by"]) == ("APPROVED", admin.id)
    final = api.wait_final(owner, stopped["id"])
    # Approved: settled under the normal checks, and never sent back to review (it is still over 500).
    assert (final["status"], final["review_note"]) == ("COMPLETED", "known customer"), final
    assert sorted(e["direction"] for e in entries(api, owner, stopped["id"])) == ["CREDIT", "DEBIT"]
    assert amounts(api, owner, source) == (10_000 - 501, 0, 10_000 - 501)
    assert api.wallet(owner, destination)["balance"] == 501
    assert api.get("/reviews", owner).json["items"] == []
    assert event_types(db, stopped["id"]) == [
        "transaction.review_required",
        "transaction.reviewed",
        "transaction.completed",
    ]
    audit = api.get("/audit-logs?action=transaction.reviewed", owner).json["items"]
    assert [(r["actor_id"], r["after"]["decision"], r["after"]["note"]) for r in audit] == [
        (admin.id, "APPROVE", "known customer")
    ]
    assert review(api, admin, stopped["id"], "REJECT").status_code == 409


def test_an_approved_transfer_still_meets_the_normal_checks(api):
    owner = api.signup()
    admin = api.add_user(owner, "ADMIN")
    source, _, stopped = in_review(api, owner)
    assert api.patch(f"/wallets/{source}", owner, json={"status": "LOCKED"}).status_code == 200
    assert review(api, admin, stopped["id"], "APPROVE").status_code == 200
    final = api.wait_final(owner, stopped["id"])
    assert (final["status"], final["failure_reason"]) == ("FAILED", "WALLET_NOT_ACTIVE")
    assert amounts(api, owner, source) == (10_000, 0, 10_000)


def test_reject_fails_it_and_releases_the_hold(api, db):
    owner = api.signup()
    admin = api.add_user(owner, "ADMIN")
    source, _, stopped = in_review(api, owner)
    response = review(api, admin, stopped["id"], "REJECT", "looks like fraud")
    assert response.status_code == 200, response.json
    final = api.get(f"/transactions/{stopped['id']}", owner).json
    assert (final["status"], final["failure_reason"], final["review_decision"]) == (
        "FAILED",
        "REJECTED_IN_REVIEW",
        "REJECTED",
    )
    assert final["completed_at"] is not None and entries(api, owner, stopped["id"]) == []
    assert amounts(api, owner, source) == (10_000, 0, 10_000)
    assert event_types(db, stopped["id"]) == [
        "transaction.review_required",
        "transaction.reviewed",
        "transaction.failed",
    ]
    assert review(api, admin, stopped["id"], "APPROVE").status_code == 409


def test_an_undecided_review_expires(api, db):
    from tasks.review import sweep_expired_reviews

    owner = api.signup()
    source, _, stopped = in_review(api, owner)
    sweep_expired_reviews()
    assert api.get(f"/transactions/{stopped['id']}", owner).json["status"] == "IN_REVIEW"  # not yet due
    db.execute(
        "UPDATE transactions SET review_started_at = now() - interval '73 hours' WHERE id = :id", id=stopped["id"]
    )
    assert sweep_expired_reviews() >= 1
    final = api.get(f"/transactions/{stopped['id']}", owner).json
    assert (final["status"], final["failure_reason"], final["review_decision"]) == (
        "FAILED",
        "REVIEW_EXPIRED",
        "EXPIRED",
    )
    assert amounts(api, owner, source) == (10_000, 0, 10_000)
    assert event_types(db, stopped["id"])[-1] == "transaction.failed"


@pytest.mark.parametrize("decisions", [("APPROVE", "REJECT"), ("REJECT", "REJECT"), ("APPROVE", "APPROVE")])
def test_two_decisions_at_once_one_wins(api, decisions):
    owner = api.signup()
    admins = [api.add_user(owner, "ADMIN"), api.add_user(owner, "ADMIN")]
    source, _, stopped = in_review(api, owner)
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def decide(admin: User, decision: str) -> None:
        barrier.wait()
        statuses.append(review(api, admin, stopped["id"], decision).status_code)

    threads = [threading.Thread(target=decide, args=pair) for pair in zip(admins, decisions, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 409]
    final = api.wait_final(owner, stopped["id"])
    assert final["status"] in ("COMPLETED", "FAILED")
    balance, held, _ = amounts(api, owner, source)
    assert held == 0 and balance == (10_000 - 501 if final["status"] == "COMPLETED" else 10_000)


def test_rules_belong_to_their_organisation(api):
    ruled, other = api.signup(), api.signup()
    set_rules(api, ruled, review_amount_over=100, max_transfers_per_wallet_per_10_minutes=1)
    source = api.funded_wallet(other, 10_000)
    destination = api.create_wallet(other)
    ruled_wallet = api.create_wallet(ruled)
    for _ in range(3):
        assert settled(api, other, source, destination, 5_00)["status"] == "COMPLETED"
    # Into the ruled organisation: the sender's rules apply, not the receiver's.
    assert settled(api, other, source, ruled_wallet, 1_000)["status"] == "COMPLETED"
    assert api.get("/reviews", ruled).json["items"] == []


def test_reconciliation_counts_transfers_in_review_as_held(api):
    owner = api.signup()
    in_review(api, owner)
    run = api.post("/reconciliation/run", owner, json={"mode": "FULL"}).json
    assert run["status"] == "CLEAN", run


def test_a_dry_run_predicts_the_review_and_writes_nothing(api, db):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    set_rules(api, owner, review_amount_over=500)
    body = {"source_wallet_id": source, "destination_wallet_id": destination, "amount": 501, "currency": "INR"}
    before = db.row_counts()
    predicted = api.post("/transactions/transfer?dry_run=true", owner, json=body)
    assert predicted.status_code == 200, predicted.json
    assert (predicted.json["would_status"], predicted.json["failure_reason"]) == ("IN_REVIEW", None)
    assert predicted.json["balances_after"][source] == {
        "balance": 10_000,
        "held_amount": 501,
        "available_balance": 9_499,
    }
    assert db.row_counts() == before
    small = api.post("/transactions/transfer?dry_run=true", owner, json={**body, "amount": 500}).json
    assert small["would_status"] == "COMPLETED"


def test_only_transfers_are_reviewed_not_withdrawals_or_p2p_settles(api):
    payer, payee = api.signup(), api.signup()
    source = api.funded_wallet(payer, 10_000)
    set_rules(api, payer, review_amount_over=1)
    request = api.p2p_request(payee, payer, api.create_wallet(payee), 500)
    paid = json_of(api.p2p_settle(payer, request["id"], source))["transaction"]["id"]
    assert api.wait_final(payer, paid)["status"] == "COMPLETED"
    withdrawal = json_of(api.post(f"/wallets/{source}/withdraw", payer, json={"amount": 100}))
    assert api.wait_final(payer, withdrawal["id"])["status"] == "COMPLETED"
    assert amounts(api, payer, source) == (10_000 - 600, 0, 10_000 - 600)
