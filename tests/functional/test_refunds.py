"""Refunds: a COMPLETED transfer's money sent back, in parts or whole, never more than it moved, by
whoever may debit the receiving wallet, settled by the real worker like any intent."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from tests.client import ApiClient, User


def refund(
    api: ApiClient, user: User, transaction_id: str, amount: int | None = None, *, key: str | None = None, **body: Any
) -> Any:
    if amount is not None:
        body["amount"] = amount
    headers = {"Idempotency-Key": key} if key else {}
    return api.post(f"/transactions/{transaction_id}/refund", user, headers=headers, json=body or None)


def completed_transfer(api: ApiClient, owner: User, amount: int = 100) -> dict[str, Any]:
    """A COMPLETED transfer of `amount` between two fresh wallets of `owner`."""
    source = api.funded_wallet(owner, amount)
    destination = api.create_wallet(owner)
    transfer = api.wait_final(owner, (api.transfer(owner, source, destination, amount).json or {})["id"])
    assert transfer["status"] == "COMPLETED", transfer
    return transfer


def read(api: ApiClient, user: User, transaction_id: str) -> dict[str, Any]:
    response = api.get(f"/transactions/{transaction_id}", user)
    assert response.status_code == 200, response.json
    return dict(response.json or {})


def test_partial_then_repeated_refunds_up_to_the_amount(api):
    owner = api.signup()
    original = completed_transfer(api, owner, 100)
    source, destination = original["source_wallet_id"], original["destination_wallet_id"]
    assert (original["refunded_amount"], original["refunds"], original["refund_of"]) == (0, [], None)

    first = refund(api, owner, original["id"], 30, reason="damaged")
    assert first.status_code == 202, first.json
    assert first.headers["Location"].endswith(f"/transactions/{first.json['id']}")
    assert first.json["type"] == "REFUND"
    assert first.json["status"] == "PENDING"
    assert first.json["refund_of"] == original["id"]
    assert (first.json["source_wallet_id"], first.json["destination_wallet_id"]) == (destination, source)
    assert (first.json["amount"], first.json["description"]) == (30, "damaged")
    assert api.wait_final(owner, first.json["id"])["status"] == "COMPLETED"
    entries = api.get(f"/transactions/{first.json['id']}/ledger", owner).json["items"]
    assert sorted((e["wallet_id"], e["direction"], e["amount"]) for e in entries) == sorted(
        [(destination, "DEBIT", 30), (source, "CREDIT", 30)]
    )
    assert (read(api, owner, original["id"])["refunded_amount"], api.wallet(owner, source)["balance"]) == (30, 30)

    # No amount: all that is left.
    rest = refund(api, owner, original["id"])
    assert rest.status_code == 202, rest.json
    assert rest.json["amount"] == 70
    assert api.wait_final(owner, rest.json["id"])["status"] == "COMPLETED"

    after = read(api, owner, original["id"])
    assert after["refunded_amount"] == 100
    assert after["refunds"] == [first.json["id"], rest.json["id"]]
    assert after["status"] == "COMPLETED"  # the original's own status never changes
    assert api.wallet(owner, source)["balance"] == 100
    assert api.wallet(owner, destination)["balance"] == 0

    nothing_left = refund(api, owner, original["id"], 1)
    assert nothing_left.status_code == 422
    assert nothing_left.json["error"]["code"] == "REFUND_EXCEEDS_AMOUNT"
    assert nothing_left.json["error"]["details"]["refundable_amount"] == 0
    assert refund(api, owner, original["id"]).json["error"]["code"] == "REFUND_EXCEEDS_AMOUNT"


def test_a_refund_above_what_is_left_is_refused_and_writes_nothing(api, db):
    owner = api.signup()
    original = completed_transfer(api, owner, 100)
    assert api.wait_final(owner, refund(api, owner, original["id"], 30).json["id"])["status"] == "COMPLETED"
    before = db.row_counts()
    audit_rows = db.scalar("SELECT count(*) FROM audit_logs")
    events = db.scalar("SELECT count(*) FROM outbox_events")

    for amount in (71, 101):
        refused = refund(api, owner, original["id"], amount, key=f"too-much-{uuid.uuid4()}")
        assert refused.status_code == 422, refused.json
        assert refused.json["error"]["code"] == "REFUND_EXCEEDS_AMOUNT"
        assert refused.json["error"]["details"] == {"amount": 100, "refunded_amount": 30, "refundable_amount": 70}

    assert db.row_counts() == before  # no intent, no idempotency key
    assert db.scalar("SELECT count(*) FROM audit_logs") == audit_rows
    assert db.scalar("SELECT count(*) FROM outbox_events") == events
    assert read(api, owner, original["id"])["refunded_amount"] == 30


@pytest.mark.parametrize("bad", [0, -5, 10.5, "10", True])
def test_a_refund_amount_is_a_positive_integer(api, bad):
    owner = api.signup()
    original = completed_transfer(api, owner, 100)
    response = api.post(f"/transactions/{original['id']}/refund", owner, json={"amount": bad})
    assert response.status_code == 422
    assert read(api, owner, original["id"])["refunds"] == []


ROUNDS = 12


def race_refunds(api: ApiClient, user: User, transaction_id: str, amounts: list[int]) -> list[Any]:
    """Each amount refunded from a thread of its own, all released at once."""
    barrier = threading.Barrier(len(amounts))
    answers: list[Any] = []

    def send(amount: int) -> None:
        barrier.wait()
        answers.append(refund(api, user, transaction_id, amount))

    threads = [threading.Thread(target=send, args=(amount,)) for amount in amounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_two_concurrent_refunds_of_60_on_100_accept_exactly_one(api, db):
    owner = api.signup()
    originals = [completed_transfer(api, owner, 100) for _ in range(ROUNDS)]
    for original in originals:
        answers = race_refunds(api, owner, original["id"], [60, 60])

        assert sorted(a.status_code for a in answers) == [202, 422], [a.json for a in answers]
        loser = next(a for a in answers if a.status_code == 422)
        assert loser.json["error"]["code"] == "REFUND_EXCEEDS_AMOUNT"
        accepted = next(a for a in answers if a.status_code == 202)
        assert api.wait_final(owner, accepted.json["id"])["status"] == "COMPLETED"
        after = read(api, owner, original["id"])
        assert (after["refunded_amount"], after["refunds"]) == (60, [accepted.json["id"]])
        assert db.scalar("SELECT count(*) FROM transactions WHERE refund_of = :id", id=original["id"]) == 1


def test_a_receiver_without_the_funds_fails_and_the_amount_can_be_refunded_again(api, db):
    owner = api.signup()
    original = completed_transfer(api, owner, 100)
    receiver = original["destination_wallet_id"]
    elsewhere = api.create_wallet(owner)
    # The receiver has spent most of it.
    assert api.wait_final(owner, api.transfer(owner, receiver, elsewhere, 80).json["id"])["status"] == "COMPLETED"

    whole = refund(api, owner, original["id"])
    assert whole.status_code == 202 and whole.json["amount"] == 100
    assert read(api, owner, original["id"])["refunded_amount"] == 100  # reserved while PENDING
    failed = api.wait_final(owner, whole.json["id"])
    assert (failed["status"], failed["failure_reason"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    assert api.get(f"/transactions/{failed['id']}/ledger", owner).json["items"] == []

    after = read(api, owner, original["id"])
    assert after["refunded_amount"] == 0  # a failed refund no longer counts
    assert after["refunds"] == [failed["id"]]  # but it stays linked

    partial = refund(api, owner, original["id"], 20)
    assert partial.status_code == 202, partial.json
    assert api.wait_final(owner, partial.json["id"])["status"] == "COMPLETED"
    assert read(api, owner, original["id"])["refunded_amount"] == 20
    assert api.wallet(owner, receiver)["balance"] == 0
    kinds = db.rows(
        "SELECT aggregate_id, event_type FROM outbox_events WHERE aggregate_id IN (:failed, :partial)"
        " AND event_type LIKE 'refund.%' ORDER BY id",
        failed=failed["id"],
        partial=partial.json["id"],
    )
    assert [(r.aggregate_id, r.event_type) for r in kinds] == [
        (failed["id"], "refund.failed"),
        (partial.json["id"], "refund.completed"),
    ]


def test_a_cancelled_refund_gives_its_amount_back(api, unpublished):
    owner = api.signup()
    original = completed_transfer(api, owner, 100)
    unpublished.start()
    pending = refund(api, owner, original["id"], 100)
    assert pending.status_code == 202
    assert read(api, owner, original["id"])["refunded_amount"] == 100
    assert refund(api, owner, original["id"], 1).status_code == 422

    cancelled = api.post(f"/transactions/{pending.json['id']}/cancel", owner)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "CANCELLED"
    assert read(api, owner, original["id"])["refunded_amount"] == 0
    assert refund(api, owner, original["id"], 100).status_code == 202


def test_cross_organisation_refund_settles_through_clearing_and_reconciles(api):
    alice, bob = api.signup("Refund sender"), api.signup("Refund receiver")
    alice_wallet = api.funded_wallet(alice, 1_000)
    bob_wallet = api.create_wallet(bob)
    original = api.wait_final(alice, api.transfer(alice, alice_wallet, bob_wallet, 100).json["id"])
    assert original["status"] == "COMPLETED"

    # The sender may see it but not debit the receiver's wallet.
    by_sender = refund(api, alice, original["id"], 10)
    assert by_sender.status_code == 403
    assert by_sender.json["error"]["code"] == "NOT_WALLET_DEBITOR"

    back = refund(api, bob, original["id"], 40)
    assert back.status_code == 202, back.json
    assert back.json["organization_id"] == bob.organization_id
    settled = api.wait_final(bob, back.json["id"])
    assert settled["status"] == "COMPLETED", settled
    assert api.wallet(alice, alice_wallet)["balance"] == 940
    assert api.wallet(bob, bob_wallet)["balance"] == 60
    assert read(api, alice, original["id"])["refunded_amount"] == 40  # the sender sees it too

    def clearing(user: User) -> int:
        items = api.get("/wallets/?type=SYSTEM", user).json["items"]
        return next(w["balance"] for w in items if w["name"] == "clearing")

    # Net obligation: Alice's organisation owes 100 - 40.
    assert (clearing(alice), clearing(bob)) == (60, -60)
    for owner in (alice, bob):
        run = api.post("/reconciliation/run", owner, json={"mode": "FULL"})
        assert run.status_code == 201, run.json
        assert (run.json["status"], run.json["findings"]) == ("CLEAN", []), run.json

    api.run_settlement(api.operator())
    assert (clearing(alice), clearing(bob)) == (0, 0)
    for owner in (alice, bob):
        assert api.post("/reconciliation/run", owner, json={"mode": "FULL"}).json["status"] == "CLEAN"


def test_only_a_completed_transfer_can_be_refunded(api, unpublished):
    owner = api.signup()
    poor = api.create_wallet(owner)
    other = api.create_wallet(owner)
    failed = api.wait_final(owner, api.transfer(owner, poor, other, 50).json["id"])
    assert failed["status"] == "FAILED"
    original = completed_transfer(api, owner, 100)
    a_refund = refund(api, owner, original["id"], 10).json
    assert api.wait_final(owner, a_refund["id"])["status"] == "COMPLETED"
    deposit = api.deposit(owner, other, 10)
    assert api.wait_final(owner, deposit["id"])["status"] == "COMPLETED"
    unpublished.start()
    pending = api.transfer(owner, original["destination_wallet_id"], other, 5).json

    for transaction_id, what in [
        (failed["id"], "FAILED TRANSFER"),
        (pending["id"], "PENDING TRANSFER"),
        (a_refund["id"], "COMPLETED REFUND"),
        (deposit["id"], "COMPLETED DEPOSIT"),
    ]:
        response = refund(api, owner, transaction_id, 1)
        assert response.status_code == 409, (what, response.json)
        assert response.json["error"]["code"] == "TRANSACTION_NOT_REFUNDABLE", what
        assert read(api, owner, transaction_id)["refunds"] == [], what


def test_a_third_party_cannot_refund(api):
    owner = api.signup()
    original = completed_transfer(api, owner, 100)
    outsider = api.signup()
    colleague = api.add_user(owner)  # a MEMBER with no access to either wallet
    admin = api.add_user(owner, "ADMIN")  # sees it, but may not debit the owner's wallet

    for stranger, status in [(outsider, 404), (colleague, 404), (admin, 403)]:
        response = refund(api, stranger, original["id"], 10)
        assert response.status_code == status, response.json
    assert read(api, owner, original["id"])["refunds"] == []
    assert refund(api, outsider, str(uuid.uuid4()), 10).status_code == 404

    # A CONTRIBUTOR of the receiving wallet may.
    grant = api.post(
        f"/wallets/{original['destination_wallet_id']}/members",
        owner,
        json={"user_id": colleague.id, "role": "CONTRIBUTOR"},
    )
    assert grant.status_code == 201, grant.json
    by_contributor = refund(api, colleague, original["id"], 10)
    assert by_contributor.status_code == 202, by_contributor.json
    assert api.wait_final(colleague, by_contributor.json["id"])["status"] == "COMPLETED"


def test_a_refund_is_audited_and_announced(api, db):
    owner = api.signup()
    original = completed_transfer(api, owner, 100)
    accepted = refund(api, owner, original["id"], 25, reason="late delivery")
    refund_id = accepted.json["id"]
    assert api.wait_final(owner, refund_id)["status"] == "COMPLETED"

    trail = api.get(f"/audit-logs?action=refund.created&target_id={refund_id}", owner).json["items"]
    assert len(trail) == 1
    assert trail[0]["actor_id"] == owner.id
    assert trail[0]["after"]["refund_of"] == original["id"]
    assert (trail[0]["after"]["amount"], trail[0]["after"]["description"]) == (25, "late delivery")
    assert trail[0]["after"]["request_id"] == accepted.headers["X-Request-ID"]

    announced = db.rows(
        "SELECT event_type, payload, wallet_ids::text[] AS wallet_ids FROM outbox_events"
        " WHERE aggregate_id = :id ORDER BY id",
        id=refund_id,
    )
    assert [e.event_type for e in announced] == ["transaction.completed", "refund.completed"]
    payload = announced[1].payload
    assert (payload["refund_of"], payload["status"], payload["type"], payload["amount"]) == (
        original["id"],
        "COMPLETED",
        "REFUND",
        25,
    )
    assert sorted(announced[1].wallet_ids) == sorted([original["source_wallet_id"], original["destination_wallet_id"]])


def test_idempotency_key_replays_the_same_refund(api, db):
    owner = api.signup()
    original = completed_transfer(api, owner, 100)
    first = refund(api, owner, original["id"], 40, key="refund-order-7")
    assert first.status_code == 202
    again = refund(api, owner, original["id"], 40, key="refund-order-7")
    assert again.status_code == 200
    assert again.json["id"] == first.json["id"]
    assert db.scalar("SELECT count(*) FROM transactions WHERE refund_of = :id", id=original["id"]) == 1
    assert read(api, owner, original["id"])["refunded_amount"] == 40

    reused = refund(api, owner, original["id"], 41, key="refund-order-7")
    assert reused.status_code == 422
    assert reused.json["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    # A colleague who may not see the refund learns nothing from the key.
    colleague = api.add_user(owner)
    hidden = refund(api, colleague, original["id"], 40, key="refund-order-7")
    assert hidden.status_code == 422
    assert hidden.json["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    # Once it is final, the replay shows it final.
    assert api.wait_final(owner, first.json["id"])["status"] == "COMPLETED"
    replayed = refund(api, owner, original["id"], 40, key="refund-order-7")
    assert (replayed.status_code, replayed.json["status"]) == (200, "COMPLETED")


def test_a_system_wallet_is_refused_at_intake(api):
    """No COMPLETED transfer names a SYSTEM wallet through the API; one written behind its back (and
    rolled back here) is still not refunded through it."""
    from sqlalchemy import text

    from ledger.errors import InvalidRequest
    from ledger.identity import load_actor
    from ledger.intents.refunds import RefundRequest, submit_refund
    from models.db import session_factory

    owner = api.signup()
    wallet = api.funded_wallet(owner, 100)
    session = session_factory()()
    try:
        treasury = session.execute(
            text("SELECT id FROM wallets WHERE organization_id = :org AND type = 'SYSTEM' AND name = 'treasury'"),
            {"org": owner.organization_id},
        ).scalar_one()
        forged = uuid.uuid4()
        session.execute(
            text(
                "INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,"
                " source_wallet_id, destination_wallet_id, completed_at)"
                " VALUES (:id, :org, :user, 'TRANSFER', 'COMPLETED', 50, 'INR', :treasury, :wallet, now())"
            ),
            {"id": forged, "org": owner.organization_id, "user": owner.id, "wallet": wallet, "treasury": treasury},
        )
        actor = load_actor(session, uuid.UUID(owner.id))
        with pytest.raises(InvalidRequest) as refused:
            submit_refund(session, actor, RefundRequest(forged, 10))
        assert refused.value.code == "SYSTEM_WALLET"
    finally:
        session.rollback()
        session.close()


def test_a_refund_is_not_held_to_the_refunders_risk_limits(api):
    """Risk limits bound money leaving a wallet for anywhere; a refund only sends back, to where it
    came from, what came. Usage never counted refunds; a refund is not charged to the limits either."""
    owner = api.signup()
    original = completed_transfer(api, owner, 100)
    limits = api.request(
        "PUT",
        "/organizations/risk-limits",
        owner,
        json={"transfer_amount_max": 50, "daily_outgoing_max_per_wallet": 50, "transfers_per_minute_max_per_wallet": 1},
    )
    assert limits.status_code == 200, limits.json
    settled = api.wait_final(owner, refund(api, owner, original["id"], 100).json["id"])
    assert (settled["status"], settled["failure_reason"]) == ("COMPLETED", None)
