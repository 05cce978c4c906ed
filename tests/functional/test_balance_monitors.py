"""Balance monitors: one event per crossing of the threshold, decided in the transaction that moved the balance."""

from __future__ import annotations

import time
import uuid

from tests.client import bulk_item


def monitor(api, user, wallet_id: str, condition: str, threshold: int) -> dict:
    response = api.post(f"/wallets/{wallet_id}/monitors", user, json={"condition": condition, "threshold": threshold})
    assert response.status_code == 201, response.json
    return response.json


def crossings(db, monitor_id: str) -> list[tuple[str, dict]]:
    """The monitor's events in the outbox, in the order they were written."""
    rows = db.rows(
        "SELECT event_type, payload FROM outbox_events"
        " WHERE aggregate_type = 'balance_monitor' AND aggregate_id = :id ORDER BY id",
        id=monitor_id,
    )
    return [(row[0].removeprefix("balance_monitor."), row[1]) for row in rows]


def settled(api, user, response) -> dict:
    assert response.status_code in (200, 202), response.json
    transaction = api.wait_final(user, response.json["id"])
    assert transaction["status"] == "COMPLETED", transaction
    return transaction


def test_crossing_below_triggers_once_and_crossing_back_resolves_once(api, db):
    owner = api.signup()
    wallet = api.funded_wallet(owner, 100)
    other = api.create_wallet(owner)
    low = monitor(api, owner, wallet, "available_balance_below", 50)
    assert (low["in_condition"], low["wallet_id"], low["threshold"]) == (False, wallet, 50)

    down = settled(api, owner, api.transfer(owner, wallet, other, 60))
    assert [kind for kind, _ in crossings(db, low["id"])] == ["triggered"]
    payload = crossings(db, low["id"])[0][1]
    assert payload["transaction_id"] == down["id"]
    assert (payload["available_balance"], payload["balance"], payload["held_amount"]) == (40, 40, 0)
    assert (payload["wallet_id"], payload["organization_id"]) == (wallet, owner.organization_id)

    settled(api, owner, api.transfer(owner, wallet, other, 10))  # further below: nothing new
    assert [kind for kind, _ in crossings(db, low["id"])] == ["triggered"]

    up = settled(api, owner, api.post(f"/wallets/{wallet}/deposit", owner, json={"amount": 50}))
    assert [kind for kind, _ in crossings(db, low["id"])] == ["triggered", "resolved"]
    assert crossings(db, low["id"])[1][1]["transaction_id"] == up["id"]
    assert crossings(db, low["id"])[1][1]["available_balance"] == 80
    listed = api.get(f"/wallets/{wallet}/monitors", owner).json["items"]
    assert [(m["id"], m["in_condition"]) for m in listed] == [(low["id"], False)]


def test_a_wallet_that_crosses_down_up_down_in_one_batch_announces_each_crossing_in_order(api, db):
    owner = api.signup()
    wallet = api.funded_wallet(owner, 100)
    other = api.funded_wallet(owner, 100)
    low = monitor(api, owner, wallet, "available_balance_below", 50)
    items = [bulk_item(wallet, other, 60), bulk_item(other, wallet, 30), bulk_item(wallet, other, 40)]
    response = api.transfer_batch(owner, items)
    assert response.status_code == 202, response.json
    ids = [item["transaction"]["id"] for item in response.json["items"]]
    done = [api.wait_final(owner, i) for i in ids]
    assert [t["status"] for t in done] == ["COMPLETED"] * 3
    assert len({t["completed_at"] for t in done}) == 1, "the three settled in one batch"

    events = crossings(db, low["id"])
    assert [kind for kind, _ in events] == ["triggered", "resolved", "triggered"]
    assert [p["transaction_id"] for _, p in events] == ids
    assert [p["available_balance"] for _, p in events] == [40, 70, 30]
    assert api.get(f"/wallets/{wallet}/monitors", owner).json["items"][0]["in_condition"] is True


def test_a_hot_wallet_locked_last_announces_the_credit_that_crossed(api, db):
    """A wallet credited by at least 16 intents of a batch is locked after the others and planned
    against its unlocked state (ledger/settlement/posting.py): its crossings still land on the right intent."""
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    merchant = api.funded_wallet(owner, 5)
    high = monitor(api, owner, merchant, "available_balance_above", 100)
    response = api.transfer_batch(owner, [bulk_item(source, merchant, 10) for _ in range(20)])
    assert response.status_code == 202, response.json
    ids = [item["transaction"]["id"] for item in response.json["items"]]
    done = [api.wait_final(owner, i) for i in ids]
    assert [t["status"] for t in done] == ["COMPLETED"] * 20
    assert len({t["completed_at"] for t in done}) == 1, "one batch"
    events = crossings(db, high["id"])
    assert [kind for kind, _ in events] == ["triggered"]
    assert events[0][1]["transaction_id"] == ids[9]  # 5 + 10 * 10 = 105 > 100
    assert events[0][1]["available_balance"] == 105


def test_a_hold_triggers_through_held_amount_and_its_void_resolves(api, db):
    owner = api.signup()
    wallet = api.funded_wallet(owner, 100)
    other = api.create_wallet(owner)
    low = monitor(api, owner, wallet, "available_balance_below", 50)
    hold = api.post("/holds", owner, json={"source_wallet_id": wallet, "destination_wallet_id": other, "amount": 60})
    assert hold.status_code == 202, hold.json
    assert api.get(f"/holds/{hold.json['id']}?wait=10", owner).json["status"] == "HELD"
    events = crossings(db, low["id"])
    assert [kind for kind, _ in events] == ["triggered"]
    assert (events[0][1]["balance"], events[0][1]["held_amount"], events[0][1]["available_balance"]) == (100, 60, 40)
    assert events[0][1]["transaction_id"] == hold.json["id"]

    assert api.post(f"/holds/{hold.json['id']}/void", owner).status_code in (200, 202)
    events = crossings(db, low["id"])
    assert [kind for kind, _ in events] == ["triggered", "resolved"]
    assert (events[1][1]["available_balance"], events[1][1]["hold_id"]) == (100, hold.json["id"])


def test_a_monitor_starts_in_the_wallets_state_and_speaks_at_the_next_crossing(api, db):
    owner = api.signup()
    empty = api.create_wallet(owner)
    low = monitor(api, owner, empty, "available_balance_below", 50)
    high = monitor(api, owner, empty, "available_balance_above", 150)
    assert (low["in_condition"], high["in_condition"]) == (True, False)
    assert crossings(db, low["id"]) == [] and crossings(db, high["id"]) == []

    settled(api, owner, api.post(f"/wallets/{empty}/deposit", owner, json={"amount": 200}))
    assert [kind for kind, _ in crossings(db, low["id"])] == ["resolved"]
    assert [kind for kind, _ in crossings(db, high["id"])] == ["triggered"]


def test_other_wallets_and_organisations_are_unaffected_and_a_deleted_monitor_is_silent(api, db):
    owner, stranger = api.signup(), api.signup()
    wallet = api.funded_wallet(owner, 100)
    bystander = api.funded_wallet(owner, 100)
    foreign = api.funded_wallet(stranger, 100)
    mine = monitor(api, owner, bystander, "available_balance_below", 50)
    theirs = monitor(api, stranger, foreign, "available_balance_below", 50)
    gone = monitor(api, owner, wallet, "available_balance_below", 50)
    assert api.request("delete", f"/wallets/{wallet}/monitors/{gone['id']}", owner).status_code == 204
    assert api.request("delete", f"/wallets/{wallet}/monitors/{gone['id']}", owner).status_code == 404

    settled(api, owner, api.transfer(owner, wallet, foreign, 90))
    assert crossings(db, gone["id"]) == []
    assert crossings(db, mine["id"]) == [] and crossings(db, theirs["id"]) == []
    assert api.get(f"/wallets/{wallet}/monitors", owner).json["items"] == []


def test_events_reach_a_webhook_subscribed_to_balance_monitor_events(api, db):
    owner = api.signup()
    wallet = api.funded_wallet(owner, 100)
    hook = api.post("/webhooks", owner, json={"url": "http://127.0.0.1:9/hook", "event_types": ["balance_monitor.*"]})
    assert hook.status_code == 201, hook.json
    low = monitor(api, owner, wallet, "available_balance_below", 50)
    settled(api, owner, api.transfer(owner, wallet, api.create_wallet(owner), 60))
    deadline, types = time.monotonic() + 30, list[str]()
    while time.monotonic() < deadline and not types:
        items = api.get(f"/webhooks/{hook.json['id']}/deliveries", owner).json["items"]
        types = [d["event_type"] for d in items]
        time.sleep(0.2)
    assert set(types) == {"balance_monitor.triggered"}
    assert crossings(db, low["id"])[0][0] == "triggered"


def test_who_may_watch_a_wallet(api):
    owner, stranger = api.signup(), api.signup()
    wallet = api.funded_wallet(owner, 100)
    viewer = api.add_user(owner)
    assert api.post(f"/wallets/{wallet}/members", owner, json={"user_id": viewer.id, "role": "VIEWER"}).status_code in (
        200,
        201,
    )
    created = monitor(api, viewer, wallet, "available_balance_above", 10)  # may see it: may watch it
    assert [m["id"] for m in api.get(f"/wallets/{wallet}/monitors", owner).json["items"]] == [created["id"]]

    body = {"condition": "available_balance_below", "threshold": 5}
    for response in (
        api.post(f"/wallets/{wallet}/monitors", stranger, json=body),
        api.get(f"/wallets/{wallet}/monitors", stranger),
        api.request("delete", f"/wallets/{wallet}/monitors/{created['id']}", stranger),
    ):
        assert (response.status_code, response.json["error"]["code"]) == (404, "WALLET_NOT_FOUND")
    # Another wallet's monitor, named under a wallet the caller may see, is not found either.
    own = api.create_wallet(stranger)
    response = api.request("delete", f"/wallets/{own}/monitors/{created['id']}", stranger)
    assert (response.status_code, response.json["error"]["code"]) == (404, "MONITOR_NOT_FOUND")
    assert api.request("delete", f"/wallets/{own}/monitors/{uuid.uuid4()}", stranger).status_code == 404

    treasury = next(w["id"] for w in api.get("/wallets/?type=SYSTEM", owner).json["items"] if w["name"] == "treasury")
    response = api.post(f"/wallets/{treasury}/monitors", owner, json=body)
    assert (response.status_code, response.json["error"]["code"]) == (422, "SYSTEM_WALLET")
    for bad in (-1, 1.5, True, "10", None):
        response = api.post(f"/wallets/{wallet}/monitors", owner, json={**body, "threshold": bad})
        assert response.status_code == 422, bad
    response = api.post(f"/wallets/{wallet}/monitors", owner, json={**body, "condition": "balance_below"})
    assert response.status_code == 422
