"""P2P request and settlement batch events: written with the change, received from `vaultcraft.events`."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from kombu import Connection, Queue, binding
from sqlalchemy import select

RECEIVE_SECONDS_MAX = 30


@pytest.fixture
def events_queue(api):
    """A real queue on the broker, bound to every P2P request and settlement batch event."""
    from tasks.outbox import EVENTS_EXCHANGE
    from workers.app import app

    connection = Connection(app.conf.broker_url)
    queue = Queue(
        f"test-p2p-events-{uuid.uuid4().hex[:8]}",
        bindings=[binding(EVENTS_EXCHANGE, routing_key=key) for key in ("p2p_request.#", "settlement_batch.*")],
    )
    bound = queue(connection.default_channel)
    bound.declare()
    yield bound
    bound.delete()
    connection.release()


def recorded(aggregate_type: str, aggregate_ids: list[str]) -> list:
    from models import OutboxEvent
    from models.db import session_factory

    with session_factory().begin() as session:
        return list(
            session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.aggregate_type == aggregate_type, OutboxEvent.aggregate_id.in_(aggregate_ids))
                .order_by(OutboxEvent.id)
            )
        )


def receive(queue, wanted: set[str]) -> dict[str, Any]:
    """Messages by event id, in arrival order, until every wanted one has arrived (or the time bound
    passes); none of the wanted ones arrives twice."""
    received: dict[str, Any] = {}
    deadline = time.monotonic() + RECEIVE_SECONDS_MAX
    while not wanted <= set(received) and time.monotonic() < deadline:
        message = queue.get(no_ack=False)
        if message is None:
            time.sleep(0.05)
            continue
        message.ack()
        event_id = message.payload["id"]
        assert not (event_id in wanted and event_id in received), "an event was delivered twice"
        received.setdefault(event_id, message)
    return received


def test_every_p2p_state_change_and_the_batch_arrive_as_recorded(api, events_queue):
    from tasks.outbox import envelope

    payee, payer = api.signup("Payee Events"), api.signup("Payer Events")
    destination, source = api.create_wallet(payee), api.funded_wallet(payer, 5_000)
    operator = api.operator()

    paid = api.p2p_request(payee, payer, destination, 1_200)
    transaction_id = api.p2p_settle(payer, paid["id"], source).json["transaction"]["id"]
    assert api.wait_final(payer, transaction_id)["status"] == "COMPLETED"
    unpaid = api.p2p_request(payee, payer, destination, 99_000)
    failed_id = api.p2p_settle(payer, unpaid["id"], source).json["transaction"]["id"]
    assert api.wait_final(payer, failed_id)["status"] == "FAILED"
    declined = api.p2p_request(payee, payer, destination, 10)
    assert api.post(f"/p2p/requests/{declined['id']}/decline", payer).status_code == 200
    cancelled = api.p2p_request(payee, payer, destination, 20)
    assert api.post(f"/p2p/requests/{cancelled['id']}/cancel", payee).status_code == 200
    # Refused and repeated actions change nothing and announce nothing.
    assert api.post(f"/p2p/requests/{declined['id']}/cancel", payee).status_code == 409
    assert api.p2p_settle(payer, paid["id"], source).status_code == 200
    batch = api.run_settlement(operator)

    ids = [paid["id"], unpaid["id"], declined["id"], cancelled["id"]]
    events = recorded("p2p_request", ids)
    by_request: dict[str, list[str]] = {}
    for event in events:
        by_request.setdefault(event.aggregate_id, []).append(event.event_type)
    # Before the payer acts, the payee's organisation and the payer's are told apart (see the test below).
    assert by_request == {
        paid["id"]: ["p2p_request.requested"] * 2 + ["p2p_request.settling", "p2p_request.settled"],
        unpaid["id"]: ["p2p_request.requested"] * 2 + ["p2p_request.settling", "p2p_request.failed"],
        declined["id"]: ["p2p_request.requested"] * 2 + ["p2p_request.declined"],
        cancelled["id"]: ["p2p_request.requested"] * 2 + ["p2p_request.cancelled"] * 2,
    }
    both = {payee.organization_id, payer.organization_id}
    for event in events:
        assert event.payload["status"] == event.event_type.split(".")[1].upper()
        assert event.payload["id"] == event.aggregate_id
        assert [str(w) for w in event.wallet_ids] == [destination]
        organizations = {str(o) for o in event.organization_ids}
        if event.payload["status"] in ("REQUESTED", "CANCELLED"):
            shown = event.payload["payer_id"] is not None
            assert organizations == ({payer.organization_id} if shown else {payee.organization_id})
        else:
            assert organizations == both and event.payload["payer_id"] == payer.id
    settled = next(e for e in events if e.event_type == "p2p_request.settled")
    assert settled.payload["transaction_id"] == transaction_id and settled.payload["amount"] == 1_200
    assert settled.payload["resolved_at"] is not None
    failure = next(e for e in events if e.event_type == "p2p_request.failed")
    assert failure.payload["failure_reason"] == "INSUFFICIENT_FUNDS"

    # One batch event per organisation in it, each with that organisation's leg alone.
    batch_events = recorded("settlement_batch", [batch["id"]])
    legs = {}
    for batch_event in batch_events:
        assert batch_event.event_type == "settlement_batch.completed"
        data = batch_event.payload
        assert (data["id"], data["status"]) == (batch["id"], "COMPLETED")
        [organization_id] = [str(o) for o in batch_event.organization_ids]
        [leg] = data["legs"]
        assert leg["organization_id"] == organization_id and data["transfer_count"] == leg["transfer_count"]
        assert {str(w) for w in batch_event.wallet_ids} == {leg["treasury_wallet_id"], leg["clearing_wallet_id"]}
        legs[organization_id] = leg
    assert legs[payer.organization_id]["net_position"] == 1_200
    assert legs[payee.organization_id]["net_position"] == -1_200

    everything = [*events, *batch_events]
    messages = receive(events_queue, {str(e.event_id) for e in everything})
    for event in everything:
        message = messages[str(event.event_id)]
        assert message.payload == envelope(event)
        assert message.delivery_info["routing_key"] == event.event_type
        assert message.properties["message_id"] == str(event.event_id)
    # Ordered per wallet: the destination's events arrive in the order they were recorded.
    arrived = [m.payload["id"] for m in messages.values() if destination in m.payload["wallet_ids"]]
    assert arrived == [str(e.event_id) for e in events]


def test_a_rolled_back_change_leaves_no_event(api):
    payee, payer = api.signup(), api.signup()
    destination = api.create_wallet(payee)
    request = api.p2p_request(payee, payer, destination, 10)
    # Settling from a wallet the payer does not hold is refused: no SETTLING state, no event.
    assert api.p2p_settle(payer, request["id"], destination).status_code in (403, 404)
    # Only the request's own announcement: one for the payee's organisation, one for the payer's.
    assert [e.event_type for e in recorded("p2p_request", [request["id"]])] == ["p2p_request.requested"] * 2


def test_a_batch_that_returns_an_earlier_one_announces_nothing_new(api):
    operator = api.operator()
    first = api.run_settlement(operator)
    again = api.run_settlement(operator, cut_off=first["cut_off"])
    assert again["id"] == first["id"]
    announced = [e.event_type for e in recorded("settlement_batch", [first["id"]])]
    assert announced and set(announced) == {"settlement_batch.completed"}
    assert [e.event_type for e in recorded("settlement_batch", [again["id"]])] == announced


def _as_the_payee_org_sees(request_id: str, payee_organization_id: str) -> list[dict[str, Any]]:
    """The request's events addressed to the payee's organisation, without what differs between any two
    requests (their ids and times)."""
    seen = []
    for event in recorded("p2p_request", [request_id]):
        if payee_organization_id not in {str(o) for o in event.organization_ids}:
            continue
        payload = {k: v for k, v in event.payload.items() if k not in ("id", "created_at", "resolved_at")}
        seen.append(
            {
                "type": event.event_type,
                "data": payload,
                "organization_ids": sorted(str(o) for o in event.organization_ids),
                "wallet_ids": sorted(str(w) for w in event.wallet_ids),
            }
        )
    return seen


def test_the_payee_org_learns_nothing_from_events_about_whether_the_payer_exists(api):
    payee, payer = api.signup("Payee Enumerates"), api.signup("Payer Exists")
    destination = api.create_wallet(payee)
    known = api.p2p_request(payee, payer, destination, 500)
    stranger = {"payer_email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "amount": 500, "currency": "INR"}
    response = api.post("/p2p/requests", payee, json={**stranger, "destination_wallet_id": destination})
    assert response.status_code == 201
    unknown = response.json
    for request in (known, unknown):
        assert api.post(f"/p2p/requests/{request['id']}/cancel", payee).status_code == 200

    seen_known = _as_the_payee_org_sees(known["id"], payee.organization_id)
    seen_unknown = _as_the_payee_org_sees(unknown["id"], payee.organization_id)
    assert [e["type"] for e in seen_known] == ["p2p_request.requested", "p2p_request.cancelled"]
    assert seen_known == seen_unknown
    assert all(e["data"]["payer_id"] is None and e["data"]["payer_organization_id"] is None for e in seen_known)

    # The payer's organisation is still told of a request to its user, in an event of its own.
    to_payer = [
        e
        for e in recorded("p2p_request", [known["id"]])
        if payer.organization_id in {str(o) for o in e.organization_ids}
    ]
    assert [e.event_type for e in to_payer] == ["p2p_request.requested", "p2p_request.cancelled"]
    assert all([str(o) for o in e.organization_ids] == [payer.organization_id] for e in to_payer)
    assert all(e.payload["payer_id"] == payer.id for e in to_payer)
