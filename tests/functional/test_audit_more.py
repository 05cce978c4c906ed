"""The audit trail of P2P requests, bulk intake and settlement runs; what a transaction says about its batch."""

from __future__ import annotations

import uuid

from tests.client import bulk_item
from tests.functional.test_audit import audit_rows
from tests.functional.test_cross_org import obligation_of, rows


def row_dir(net: int) -> str:
    return "PAY" if net > 0 else "RECEIVE"


def _actions(api, user, target_id: str) -> list[str]:
    return [r["action"] for r in reversed(audit_rows(api, user, target_id=target_id))]  # oldest first


def test_every_p2p_action_is_audited_in_the_actors_organisation(api):
    payee, payer = api.signup("Payee Audit"), api.signup("Payer Audit")
    destination, source = api.create_wallet(payee), api.funded_wallet(payer, 1_000)
    paid = api.p2p_request(payee, payer, destination, 300)
    settle = api.p2p_settle(payer, paid["id"], source)
    assert settle.status_code == 202
    assert api.p2p_settle(payer, paid["id"], source).status_code == 200  # a replay records nothing
    declined = api.p2p_request(payee, payer, destination, 5)
    assert api.post(f"/p2p/requests/{declined['id']}/decline", payer).status_code == 200
    cancelled = api.p2p_request(payee, payer, destination, 6)
    assert api.post(f"/p2p/requests/{cancelled['id']}/cancel", payee).status_code == 200
    assert api.post(f"/p2p/requests/{cancelled['id']}/decline", payer).status_code == 409  # refused: no row

    # The payee's organisation sees what the payee did, the payer's what the payer did; never the other's.
    assert _actions(api, payee, paid["id"]) == ["p2p_request.created"]
    assert _actions(api, payer, paid["id"]) == ["p2p_request.settled"]
    assert _actions(api, payee, declined["id"]) == ["p2p_request.created"]
    assert _actions(api, payer, declined["id"]) == ["p2p_request.declined"]
    assert _actions(api, payee, cancelled["id"]) == ["p2p_request.created", "p2p_request.cancelled"]
    assert _actions(api, payer, cancelled["id"]) == []

    [created] = audit_rows(api, payee, target_id=paid["id"])
    assert created["target_type"] == "p2p_request" and created["actor_id"] == payee.id
    assert created["after"]["amount"] == 300 and created["after"]["payer_email"] == payer.email
    assert created["after"]["payer_id"] is None  # the payee's side learns nothing of who has an account
    assert created["before"] is None
    [settled] = audit_rows(api, payer, target_id=paid["id"])
    transaction = settle.json["transaction"]
    assert settled["before"] == {"status": "REQUESTED"}
    assert settled["after"]["status"] == "SETTLING" and settled["after"]["transaction_id"] == transaction["id"]
    assert settled["request_id"] == settle.headers["X-Request-ID"]
    # The settle's transfer intent is audited, stamped and traced like any other transfer.
    [intent] = audit_rows(api, payer, target_id=transaction["id"])
    assert intent["action"] == "transfer.created" and intent["request_id"] == settle.headers["X-Request-ID"]
    assert transaction["request_id"] == settle.headers["X-Request-ID"]
    [declined_row] = audit_rows(api, payer, target_id=declined["id"])
    assert (declined_row["before"], declined_row["after"]["status"]) == ({"status": "REQUESTED"}, "DECLINED")


def test_the_seed_compatible_p2p_paths_are_audited_alike(api):
    payee, payer = api.signup(), api.signup()
    destination, source = api.create_wallet(payee), api.funded_wallet(payer, 100)
    client = api.app.test_client()
    created = client.post(
        "/api/vault-settlements/p2p/request",
        headers=payee.headers,
        json={"payer_email": payer.email, "amount": 40, "currency": "INR", "destination_wallet_id": destination},
    )
    assert created.status_code == 201, created.json
    request_id = created.json["id"]
    settled = client.post(
        f"/api/vault-settlements/p2p/settle/{request_id}", headers=payer.headers, json={"source_wallet_id": source}
    )
    assert settled.status_code == 202, settled.json
    assert _actions(api, payee, request_id) == ["p2p_request.created"]
    assert _actions(api, payer, request_id) == ["p2p_request.settled"]
    assert _actions(api, payer, settled.json["transaction"]["id"]) == ["transfer.created"]


def test_bulk_intake_audits_each_new_intent_in_its_commit(api):
    owner = api.signup()
    source, destination = api.funded_wallet(owner, 1_000), api.create_wallet(owner)
    replayed = bulk_item(source, destination, 7)
    assert api.transfer_batch(owner, [replayed]).json["accepted"] == 1
    items = [
        bulk_item(source, destination, 11, description="first"),
        bulk_item(source, destination, 12),
        replayed,  # a replay of an earlier key: no new row
        bulk_item(source, str(uuid.uuid4()), 13),  # refused: no row
        {"amount": "not a transfer"},  # rejected by validation: no row
    ]
    response = api.transfer_batch(owner, items)
    assert (response.json["accepted"], response.json["replayed"], response.json["rejected"]) == (2, 1, 2)
    accepted = [r["transaction"] for r in response.json["items"] if r["status_code"] == 202]
    for transaction in accepted:
        [row] = audit_rows(api, owner, target_id=transaction["id"])
        assert row["action"] == "transfer.created" and row["target_type"] == "transaction"
        assert row["actor_id"] == owner.id and row["organization_id"] == owner.organization_id
        assert row["request_id"] == response.headers["X-Request-ID"] and row["source_address"] == "127.0.0.1"
        assert row["after"]["amount"] == transaction["amount"] and row["after"]["status"] == "PENDING"
        assert row["after"]["source_wallet_id"] == source
    assert audit_rows(api, owner, target_id=accepted[0]["id"])[0]["after"]["description"] == "first"
    replay_id = response.json["items"][2]["transaction"]["id"]
    assert len(audit_rows(api, owner, target_id=replay_id)) == 1  # the first batch's row only
    by_request = [r for r in audit_rows(api, owner) if r["request_id"] == response.headers["X-Request-ID"]]
    assert len(by_request) == 2


def test_settlement_runs_are_audited_for_the_operator_and_every_organisation_in_the_batch(api):
    from models import BatchTrigger
    from tasks.settlement_batches import run_settlement_batch

    sender, receiver = api.signup("Sender Bank"), api.signup("Receiver Bank")
    source, destination = api.funded_wallet(sender, 1_000), api.create_wallet(receiver)
    transfer = api.transfer(sender, source, destination, 250)
    assert api.wait_final(sender, transfer.json["id"])["status"] == "COMPLETED"
    operator = api.operator()
    response = api.post("/settlements/run", operator, json={}, headers={"X-Request-ID": "settle-run-1"})
    assert response.status_code == 201, response.json
    batch = response.json

    [mine] = audit_rows(api, operator, target_id=batch["id"])
    assert (mine["action"], mine["actor_id"], mine["request_id"]) == ("settlement.run", operator.id, "settle-run-1")
    assert mine["target_type"] == "settlement_batch" and mine["after"]["new_batch"] is True
    assert mine["after"]["trigger"] == "OPERATOR"
    for owner, net in ((sender, 250), (receiver, -250)):
        [row] = audit_rows(api, owner, target_id=batch["id"])
        assert row["action"] == "settlement.run" and row["actor_id"] == operator.id
        assert row["organization_id"] == owner.organization_id
        assert row["after"]["positions"] == [{"currency": "INR", "net_position": net, "direction": row_dir(net)}]

    # The same cut-off again returns the batch: the operator's request is recorded, nobody else's trail grows.
    assert api.run_settlement(operator, cut_off=batch["cut_off"])["id"] == batch["id"]
    assert [r["after"]["new_batch"] for r in audit_rows(api, operator, target_id=batch["id"])] == [False, True]
    assert len(audit_rows(api, sender, target_id=batch["id"])) == 1

    # Beat runs it as the system: a platform row with no actor, labelled as beat.
    scheduled, created = run_settlement_batch(BatchTrigger.SCHEDULE)
    assert created
    [platform] = rows(
        "SELECT actor_id, actor_label, organization_id, source_address FROM audit_logs"
        " WHERE action = 'settlement.run' AND target_id = :id",
        id=str(scheduled.id),
    )
    assert tuple(platform) == (None, "system:beat", None, None)


def test_a_transaction_names_its_batch_its_parent_and_its_request(api):
    sender, receiver = api.signup(), api.signup()
    source, destination = api.funded_wallet(sender, 1_000), api.create_wallet(receiver)
    accepted = api.transfer(sender, source, destination, 90, key="schema-check")
    assert accepted.json["request_id"] == accepted.headers["X-Request-ID"]
    assert accepted.json["settlement_batch_id"] is None and accepted.json["parent_transaction_id"] is None
    transfer_id = accepted.json["id"]
    assert api.wait_final(sender, transfer_id)["settlement_batch_id"] is None
    batch = api.run_settlement(api.operator())

    transaction = api.get(f"/transactions/{transfer_id}", sender).json
    assert transaction["settlement_batch_id"] == batch["id"]
    assert transaction["parent_transaction_id"] is None
    assert transaction["request_id"] == accepted.headers["X-Request-ID"]
    [listed] = [
        t for t in api.get(f"/transactions/?wallet_id={source}", sender).json["items"] if t["id"] == transfer_id
    ]
    assert (listed["settlement_batch_id"], listed["request_id"]) == (batch["id"], accepted.headers["X-Request-ID"])
    # The clearing obligation the transfer posted names it as its parent, and the same batch.
    obligation = obligation_of(transfer_id)
    seen = api.get(f"/transactions/{obligation.id}", sender)  # the sender's OWNER sees its organisation's
    assert seen.status_code == 200, seen.json
    assert (seen.json["type"], seen.json["parent_transaction_id"]) == ("CLEARING", transfer_id)
    assert seen.json["settlement_batch_id"] == obligation.batch == batch["id"]
