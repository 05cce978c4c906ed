"""`?dry_run=true` on every write endpoint: it answers what the real call would do from the state at
that moment (the same 4xx when the call would be refused), and writes nothing at all."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from tests.client import ApiClient, User, bulk_item
from tests.database import Database

DRY = {"dry_run": "true"}
COMPAT_INTERNAL = "/api/vault-settlements/internal"


def _post(api: ApiClient, path: str, user: User, *, dry: bool, key: str | None = None, **kwargs: Any):
    """POST to an /api/v1 path, or a seed-compatible one given in full."""
    headers = {**user.headers, **({"Idempotency-Key": key} if key else {})}
    full = path if path.startswith("/api/vault-settlements") else f"/api/v1{path}"
    return api.app.test_client().post(full, headers=headers, query_string=DRY if dry else None, **kwargs)


def _transfer_body(source: str, destination: str, amount: int) -> dict[str, Any]:
    return {"source_wallet_id": source, "destination_wallet_id": destination, "amount": amount}


def _amounts(balance: int) -> dict[str, int]:
    return {"balance": balance, "held_amount": 0, "available_balance": balance}


def _balances(api: ApiClient, user: User, *wallet_ids: str) -> dict[str, dict[str, int]]:
    """The wallets as GET /wallets/{id} shows them, in the dry run's shape (nothing is held yet)."""
    shown = {}
    for wallet_id in wallet_ids:
        wallet = api.wallet(user, wallet_id)
        shown[wallet_id] = {"balance": wallet["balance"], "held_amount": 0, "available_balance": wallet["balance"]}
    return shown


def _final(api: ApiClient, user: User, response: Any) -> dict[str, Any]:
    assert response.status_code == 202, response.json
    body = response.json
    return api.wait_final(user, body["transaction"]["id"] if "transaction" in body else body["id"])


def _predicted(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.json
    assert response.json["dry_run"] is True
    return dict(response.json)


TRANSFER_PATHS = ["/transactions/transfer", "/wallets/transfer", COMPAT_INTERNAL]


@pytest.mark.parametrize("path", TRANSFER_PATHS)
def test_a_transfer_dry_run_predicts_what_the_real_call_then_does(api, path):
    owner = api.signup()
    source, destination = api.funded_wallet(owner, 10_000), api.create_wallet(owner)
    body = _transfer_body(source, destination, 2_500)

    prediction = _predicted(_post(api, path, owner, dry=True, json=body))

    assert (prediction["would_status"], prediction["failure_reason"]) == ("COMPLETED", None)
    assert prediction["balances_after"] == {source: _amounts(7_500), destination: _amounts(2_500)}
    assert _balances(api, owner, source, destination) == {source: _amounts(10_000), destination: _amounts(0)}
    final = _final(api, owner, _post(api, path, owner, dry=False, json=body))
    assert final["status"] == "COMPLETED"
    assert _balances(api, owner, source, destination) == prediction["balances_after"]


def test_a_refund_dry_run_predicts_what_the_real_refund_then_does(api):
    owner = api.signup()
    source, destination = api.funded_wallet(owner, 10_000), api.create_wallet(owner)
    paid = _final(
        api,
        owner,
        _post(api, "/transactions/transfer", owner, dry=False, json=_transfer_body(source, destination, 3_000)),
    )
    path = f"/transactions/{paid['id']}/refund"

    prediction = _predicted(_post(api, path, owner, dry=True, json={"amount": 1_000}))

    assert (prediction["would_status"], prediction["failure_reason"]) == ("COMPLETED", None)
    assert prediction["balances_after"] == {source: _amounts(8_000), destination: _amounts(2_000)}
    assert api.get(f"/transactions/{paid['id']}", owner).json["refunded_amount"] == 0  # nothing was reserved
    final = _final(api, owner, _post(api, path, owner, dry=False, json={"amount": 1_000}))
    assert final["status"] == "COMPLETED"
    assert _balances(api, owner, source, destination) == prediction["balances_after"]
    too_much = _post(api, path, owner, dry=True, json={"amount": 2_001})
    assert (too_much.status_code, too_much.json["error"]["code"]) == (422, "REFUND_EXCEEDS_AMOUNT")


def test_deposit_and_withdrawal_dry_runs_predict_the_real_calls(api):
    owner = api.signup()
    wallet = api.funded_wallet(owner, 1_000)  # the treasury exists from here on
    treasury = next(w["id"] for w in api.get("/wallets/?type=SYSTEM", owner).json["items"] if w["name"] == "treasury")

    deposit = _predicted(_post(api, f"/wallets/{wallet}/deposit", owner, dry=True, json={"amount": 400}))
    assert (deposit["would_status"], deposit["failure_reason"]) == ("COMPLETED", None)
    assert deposit["balances_after"] == {wallet: _amounts(1_400), treasury: _amounts(-1_400)}
    assert (
        _final(api, owner, _post(api, f"/wallets/{wallet}/deposit", owner, dry=False, json={"amount": 400}))["status"]
        == "COMPLETED"
    )
    assert _balances(api, owner, wallet, treasury) == deposit["balances_after"]

    withdraw = f"/wallets/{wallet}/withdraw"
    too_much = _predicted(_post(api, withdraw, owner, dry=True, json={"amount": 5_000}))
    assert (too_much["would_status"], too_much["failure_reason"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    assert too_much["balances_after"] == {wallet: _amounts(1_400), treasury: _amounts(-1_400)}
    real = _final(api, owner, _post(api, withdraw, owner, dry=False, json={"amount": 5_000}))
    assert (real["status"], real["failure_reason"]) == ("FAILED", "INSUFFICIENT_FUNDS")

    withdrawal = _predicted(_post(api, withdraw, owner, dry=True, json={"amount": 1_000}))
    assert withdrawal["would_status"] == "COMPLETED"
    assert _final(api, owner, _post(api, withdraw, owner, dry=False, json={"amount": 1_000}))["status"] == "COMPLETED"
    assert _balances(api, owner, wallet, treasury) == withdrawal["balances_after"]
    assert withdrawal["balances_after"][wallet] == _amounts(400)


def test_a_p2p_settle_dry_run_predicts_and_shows_only_the_payers_wallets(api):
    payer, payee = api.signup(), api.signup()
    source, payee_wallet = api.funded_wallet(payer, 3_000), api.create_wallet(payee)
    request = api.p2p_request(payee, payer, payee_wallet, 1_200)
    path = f"/p2p/requests/{request['id']}/settle"

    prediction = _predicted(_post(api, path, payer, dry=True, json={"source_wallet_id": source}))

    assert (prediction["would_status"], prediction["failure_reason"]) == ("COMPLETED", None)
    # The payee's wallet is another organisation's: its balance is not the payer's to see.
    assert prediction["balances_after"] == {source: _amounts(1_800)}
    assert api.get(f"/p2p/requests/{request['id']}", payer).json["status"] == "REQUESTED"
    compat = _post(
        api, f"/api/vault-settlements/p2p/settle/{request['id']}", payer, dry=True, json={"source_wallet_id": source}
    )
    assert _predicted(compat) == prediction
    assert _final(api, payer, _post(api, path, payer, dry=False, json={"source_wallet_id": source}))["status"] == (
        "COMPLETED"
    )
    assert _balances(api, payer, source) == prediction["balances_after"]
    assert api.wallet(payee, payee_wallet)["balance"] == 1_200


def test_insufficient_funds_and_a_risk_limit_predict_failed(api):
    owner = api.signup()
    source, destination = api.funded_wallet(owner, 1_000), api.create_wallet(owner)
    short = _predicted(
        _post(api, "/transactions/transfer", owner, dry=True, json=_transfer_body(source, destination, 1_001))
    )
    assert (short["would_status"], short["failure_reason"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    assert short["balances_after"] == {source: _amounts(1_000), destination: _amounts(0)}

    limits = {"transfer_amount_max": 300}
    assert api.request("PUT", "/organizations/risk-limits", owner, json=limits).status_code == 200
    over = _predicted(
        _post(api, "/transactions/transfer", owner, dry=True, json=_transfer_body(source, destination, 301))
    )
    assert (over["would_status"], over["failure_reason"]) == ("FAILED", "RISK_LIMIT")
    real = _final(
        api,
        owner,
        _post(api, "/transactions/transfer", owner, dry=False, json=_transfer_body(source, destination, 301)),
    )
    assert (real["status"], real["failure_reason"]) == ("FAILED", "RISK_LIMIT")
    withdrawal = _predicted(_post(api, f"/wallets/{source}/withdraw", owner, dry=True, json={"amount": 301}))
    assert withdrawal["failure_reason"] == "RISK_LIMIT"


def test_earlier_pending_intents_on_the_source_are_planned_first(api, unpublished):
    owner = api.signup()
    source, destination = api.funded_wallet(owner, 1_000), api.create_wallet(owner)
    unpublished.start()  # the first transfer waits, PENDING, ahead of the dry run
    ahead = api.transfer(owner, source, destination, 800)
    assert ahead.status_code == 202

    behind = _predicted(
        _post(api, "/transactions/transfer", owner, dry=True, json=_transfer_body(source, destination, 500))
    )
    assert (behind["would_status"], behind["failure_reason"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    assert behind["balances_after"] == {source: _amounts(200), destination: _amounts(800)}
    fits = _predicted(
        _post(api, "/transactions/transfer", owner, dry=True, json=_transfer_body(source, destination, 200))
    )
    assert fits["balances_after"] == {source: _amounts(0), destination: _amounts(1_000)}


# --- holds: hold, capture, void -----------------------------------------------------------------------


def _hold_body(source: str, destination: str, amount: int) -> dict[str, Any]:
    return {"source_wallet_id": source, "destination_wallet_id": destination, "amount": amount}


def _three(balance: int, held: int) -> dict[str, int]:
    return {"balance": balance, "held_amount": held, "available_balance": balance - held}


def _shown(api: ApiClient, user: User, *wallet_ids: str) -> dict[str, dict[str, int]]:
    """The wallets' three amounts as GET /wallets/{id} shows them."""
    shown = {}
    for wallet_id in wallet_ids:
        wallet = api.wallet(user, wallet_id)
        shown[wallet_id] = {k: wallet[k] for k in ("balance", "held_amount", "available_balance")}
    return shown


def _hold_final(api: ApiClient, user: User, response: Any) -> dict[str, Any]:
    assert response.status_code == 202, response.json
    found = api.get(f"/holds/{response.json['id']}?wait=10", user).json or {}
    assert found.get("status") not in (None, "PENDING"), found
    return dict(found)


def test_a_hold_dry_run_predicts_held_or_failed_as_the_real_hold_then_ends(api):
    owner = api.signup()
    source, destination = api.funded_wallet(owner, 10_000), api.create_wallet(owner)

    prediction = _predicted(_post(api, "/holds", owner, dry=True, json=_hold_body(source, destination, 2_500)))

    assert (prediction["would_status"], prediction["failure_reason"]) == ("HELD", None)
    assert prediction["balances_after"] == {source: _three(10_000, 2_500), destination: _three(0, 0)}
    assert _shown(api, owner, source) == {source: _three(10_000, 0)}
    assert api.get("/holds", owner).json["items"] == []
    real = _hold_final(api, owner, _post(api, "/holds", owner, dry=False, json=_hold_body(source, destination, 2_500)))
    assert real["status"] == "HELD"
    assert _shown(api, owner, source, destination) == prediction["balances_after"]

    too_much = _predicted(_post(api, "/holds", owner, dry=True, json=_hold_body(source, destination, 7_501)))
    assert (too_much["would_status"], too_much["failure_reason"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    assert too_much["balances_after"][source] == _three(10_000, 2_500)
    failed = _hold_final(
        api, owner, _post(api, "/holds", owner, dry=False, json=_hold_body(source, destination, 7_501))
    )
    assert (failed["status"], failed["failure_reason"]) == ("FAILED", "INSUFFICIENT_FUNDS")


def test_a_capture_dry_run_predicts_the_real_capture(api):
    owner = api.signup()
    source, destination = api.funded_wallet(owner, 10_000), api.create_wallet(owner)
    hold = _hold_final(api, owner, _post(api, "/holds", owner, dry=False, json=_hold_body(source, destination, 4_000)))
    path = f"/holds/{hold['id']}/capture"

    prediction = _predicted(_post(api, path, owner, dry=True, json={"amount": 1_500}))

    assert (prediction["would_status"], prediction["failure_reason"]) == ("COMPLETED", None)
    assert prediction["balances_after"] == {source: _three(8_500, 2_500), destination: _three(1_500, 0)}
    assert api.get(f"/holds/{hold['id']}", owner).json["captures"] == []  # nothing reserved on the hold
    final = _final(api, owner, _post(api, path, owner, dry=False, json={"amount": 1_500}))
    assert final["status"] == "COMPLETED"
    assert _shown(api, owner, source, destination) == prediction["balances_after"]

    # A final capture releases the rest too.
    last = _predicted(_post(api, path, owner, dry=True, json={"amount": 500, "final": True}))
    assert last["balances_after"] == {source: _three(8_000, 0), destination: _three(2_000, 0)}
    assert _final(api, owner, _post(api, path, owner, dry=False, json={"amount": 500, "final": True}))["status"] == (
        "COMPLETED"
    )
    assert _shown(api, owner, source, destination) == last["balances_after"]


def test_a_capture_into_a_locked_wallet_is_predicted_failed(api):
    owner = api.signup()
    source, destination = api.funded_wallet(owner, 1_000), api.create_wallet(owner)
    hold = _hold_final(api, owner, _post(api, "/holds", owner, dry=False, json=_hold_body(source, destination, 600)))
    assert api.patch(f"/wallets/{destination}", owner, json={"status": "LOCKED"}).status_code == 200
    path = f"/holds/{hold['id']}/capture"

    prediction = _predicted(_post(api, path, owner, dry=True, json={}))

    assert (prediction["would_status"], prediction["failure_reason"]) == ("FAILED", "WALLET_NOT_ACTIVE")
    assert prediction["balances_after"][source] == _three(1_000, 600)
    real = _final(api, owner, _post(api, path, owner, dry=False, json={}))
    assert (real["status"], real["failure_reason"]) == ("FAILED", "WALLET_NOT_ACTIVE")
    assert _shown(api, owner, source)[source] == prediction["balances_after"][source]


def test_a_void_dry_run_predicts_the_release_and_refuses_as_the_real_void(api):
    owner = api.signup()
    source, destination = api.funded_wallet(owner, 5_000), api.create_wallet(owner)
    hold = _hold_final(api, owner, _post(api, "/holds", owner, dry=False, json=_hold_body(source, destination, 3_000)))
    assert _final(api, owner, _post(api, f"/holds/{hold['id']}/capture", owner, dry=False, json={"amount": 1_000}))
    path = f"/holds/{hold['id']}/void"

    prediction = _predicted(_post(api, path, owner, dry=True))

    # A void ends the hold at once: COMPLETED, with what remained of the hold released.
    assert (prediction["would_status"], prediction["failure_reason"]) == ("COMPLETED", None)
    assert prediction["balances_after"] == {source: _three(4_000, 0), destination: _three(1_000, 0)}
    assert api.get(f"/holds/{hold['id']}", owner).json["status"] == "HELD"
    assert _shown(api, owner, source)[source] == _three(4_000, 2_000)
    voided = _post(api, path, owner, dry=False)
    assert (voided.status_code, voided.json["status"]) == (202, "VOIDED")
    assert _shown(api, owner, source, destination) == prediction["balances_after"]
    # Voiding again is answered as it is, for real and dry; a capture now is refused alike.
    assert _predicted(_post(api, path, owner, dry=True))["balances_after"] == prediction["balances_after"]
    capture_path = f"/holds/{hold['id']}/capture"
    dry, real = (_post(api, capture_path, owner, dry=d, json={}) for d in (True, False))
    assert (dry.status_code, dry.json["error"]["code"]) == (real.status_code, real.json["error"]["code"])
    assert real.json["error"]["code"] == "HOLD_NOT_ACTIVE"


def test_a_pending_hold_ahead_is_planned_before_a_transfer(api, monkeypatch):
    from web.routes import holds

    owner = api.signup()
    source, destination = api.funded_wallet(owner, 1_000), api.create_wallet(owner)
    monkeypatch.setattr(holds, "settle_soon", lambda ids: True)  # the hold waits, PENDING, ahead
    ahead = _post(api, "/holds", owner, dry=False, json=_hold_body(source, destination, 800))
    assert (ahead.status_code, ahead.json["status"]) == (202, "PENDING")

    behind = _predicted(
        _post(api, "/transactions/transfer", owner, dry=True, json=_transfer_body(source, destination, 500))
    )

    assert (behind["would_status"], behind["failure_reason"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    assert behind["balances_after"] == {source: _three(1_000, 800), destination: _three(0, 0)}


def test_bulk_items_are_predicted_in_order(api):
    owner, stranger = api.signup(), api.signup()
    source, destination = api.funded_wallet(owner, 1_000), api.create_wallet(owner)
    foreign = api.create_wallet(stranger)
    items = [
        bulk_item(source, destination, 700),
        bulk_item(source, destination, 700),  # the first used the money
        bulk_item(foreign, destination, 5),  # refused, as the real call refuses it
        bulk_item(source, destination, 300),
    ]
    items.append(dict(items[0]))  # the same key and request again: it replays the first

    response = _post(api, "/transactions/batch", owner, dry=True, json={"transfers": items})

    answer = _predicted(response)
    assert (answer["accepted"], answer["replayed"], answer["rejected"]) == (3, 1, 1)
    results = answer["items"]
    assert [r["status_code"] for r in results] == [202, 202, 404, 202, 200]
    assert [r["would_status"] for r in results] == ["COMPLETED", "FAILED", None, "COMPLETED", "COMPLETED"]
    assert [r["failure_reason"] for r in results] == [None, "INSUFFICIENT_FUNDS", None, None, None]
    assert results[2]["error"]["code"] == "WALLET_NOT_FOUND" and results[2]["balances_after"] is None
    assert results[0]["balances_after"] == {source: _amounts(300), destination: _amounts(700)}
    assert results[1]["balances_after"] == {source: _amounts(300), destination: _amounts(700)}
    assert results[3]["balances_after"] == {source: _amounts(0), destination: _amounts(1_000)}
    assert all(r["transaction"] is None for r in results)

    real = _post(api, "/transactions/batch", owner, dry=False, json={"transfers": items})
    assert real.status_code == 202, real.json
    assert [r["status_code"] for r in real.json["items"]] == [202, 202, 404, 202, 200]
    finals = [api.wait_final(owner, r["transaction"]["id"]) for r in real.json["items"] if r["status_code"] == 202]
    assert [(f["status"], f["failure_reason"]) for f in finals] == [
        ("COMPLETED", None),
        ("FAILED", "INSUFFICIENT_FUNDS"),
        ("COMPLETED", None),
    ]
    assert _balances(api, owner, source, destination) == results[3]["balances_after"]


def _refusals(api: ApiClient) -> list[tuple[str, User, dict[str, Any]]]:
    owner, stranger = api.signup(), api.signup()
    member = api.add_user(owner)
    source, destination = api.funded_wallet(owner, 1_000), api.create_wallet(owner)
    foreign = api.create_wallet(stranger)
    request = api.p2p_request(stranger, owner, foreign, 10)
    body = _transfer_body(source, destination, 5)
    return [
        ("/transactions/transfer", owner, _transfer_body(source, source, 5)),  # 422 SAME_WALLET
        ("/transactions/transfer", stranger, _transfer_body(source, foreign, 5)),  # 404
        ("/wallets/transfer", owner, _transfer_body(source, str(uuid.uuid4()), 5)),  # 404 destination
        (COMPAT_INTERNAL, owner, _transfer_body(source, foreign, 5)),  # 404: not the caller's own
        (f"/wallets/{destination}/deposit", member, {"amount": 5}),  # 404: not visible to a MEMBER
        (f"/wallets/{source}/withdraw", member, {"amount": 5}),  # 404
        (f"/wallets/{source}/deposit", owner, {"amount": 0}),  # 422 schema
        ("/transactions/transfer", owner, {**body, "amount": 1.5}),  # 422 schema
        (f"/p2p/requests/{request['id']}/settle", stranger, {"source_wallet_id": foreign}),  # 404: the payee
        (f"/p2p/requests/{request['id']}/settle", owner, {"source_wallet_id": destination, "x": 1}),  # 422
        ("/transactions/batch", owner, {"transfers": []}),  # 422
    ]


def test_a_refused_request_gets_the_same_error_as_the_real_call(api):
    for path, user, body in _refusals(api):
        dry = _post(api, path, user, dry=True, json=body)
        real = _post(api, path, user, dry=False, json=body)
        assert dry.status_code in (403, 404, 409, 422), (path, dry.status_code, dry.json)
        assert (dry.status_code, dry.json) == (real.status_code, real.json), path


def test_a_member_who_may_only_view_the_source_gets_403_as_for_real(api):
    owner = api.signup()
    member = api.add_user(owner)
    source, destination = api.funded_wallet(owner, 1_000), api.create_wallet(owner)
    grant = api.post(f"/wallets/{source}/members", owner, json={"user_id": member.id, "role": "VIEWER"})
    assert grant.status_code == 201, grant.json
    for dry in (True, False):
        response = _post(api, "/transactions/transfer", member, dry=dry, json=_transfer_body(source, destination, 5))
        assert (response.status_code, response.json["error"]["code"]) == (403, "NOT_WALLET_DEBITOR")


def test_an_invalid_dry_run_value_is_refused(api):
    owner = api.signup()
    source, destination = api.funded_wallet(owner, 100), api.create_wallet(owner)
    response = api.app.test_client().post(
        "/api/v1/transactions/transfer?dry_run=perhaps",
        headers=owner.headers,
        json=_transfer_body(source, destination, 5),
    )
    assert (response.status_code, response.json["error"]["code"]) == (422, "VALIDATION_ERROR")
    assert "dry_run" in response.json["error"]["details"]
    assert (
        _post(api, "/transactions/transfer", owner, dry=False, json=_transfer_body(source, destination, 5)).status_code
        == 202
    )


def test_a_dry_run_does_not_claim_its_idempotency_key(api):
    owner = api.signup()
    source, destination = api.funded_wallet(owner, 1_000), api.create_wallet(owner)
    body = _transfer_body(source, destination, 100)
    key = f"dry-{uuid.uuid4().hex}"

    assert _predicted(_post(api, "/transactions/transfer", owner, dry=True, key=key, json=body))["would_status"] == (
        "COMPLETED"
    )
    first = _post(api, "/transactions/transfer", owner, dry=False, key=key, json=body)
    assert first.status_code == 202, first.json  # new, not a replay
    assert api.wait_final(owner, first.json["id"])["status"] == "COMPLETED"

    # Once the key is taken, a dry run answers as the real call would: a replay moves nothing more.
    replay = _predicted(_post(api, "/transactions/transfer", owner, dry=True, key=key, json=body))
    assert (replay["would_status"], replay["balances_after"][source]) == ("COMPLETED", _amounts(900))
    other = _post(api, "/transactions/transfer", owner, dry=True, key=key, json={**body, "amount": 101})
    assert (other.status_code, other.json["error"]["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")


# --- nothing is written, counted or published --------------------------------------------------------


def _row_counts(db: Database) -> dict[str, int]:
    """Every table of the schema, found in the catalogue: a table added later is counted too."""
    tables = [
        row[0]
        for row in db.rows(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
    ]
    assert {"transactions", "audit_logs", "idempotency_keys", "outbox_events"} <= set(tables), tables
    return {table: db.scalar(f'SELECT count(*) FROM "{table}"') for table in tables}


def _queues() -> dict[str, int]:
    """Every list in the run's Redis (the broker's queues) and its length, and the wake keys."""
    from settings import get_settings

    client = redis.Redis.from_url(get_settings().redis_url)
    lists = {key.decode(): client.llen(key) for key in client.scan_iter() if client.type(key) == b"list"}
    wakes = {key: client.exists(key) for key in ("vaultcraft:settle:wake", "vaultcraft:outbox:wake")}
    return {**lists, **wakes}


def _quiet(db: Database, seconds_max: float = 30) -> dict[str, int]:
    """Row counts once the worker has nothing left to write (they stay the same for a second)."""
    deadline = time.monotonic() + seconds_max
    counts = _row_counts(db)
    while time.monotonic() < deadline:
        time.sleep(1)
        again = _row_counts(db)
        if again == counts:
            return counts
        counts = again
    raise AssertionError("the database never went quiet")


def _accepted_total() -> float:
    samples = [s for m in REGISTRY.collect() if m.name == "vaultcraft_intents_accepted" for s in m.samples]
    return sum(s.value for s in samples if s.name.endswith("_total"))


def test_a_dry_run_of_every_endpoint_writes_counts_and_publishes_nothing(api, db, monkeypatch):
    from tasks import wake

    owner, payer = api.signup(), api.signup()
    source, destination = api.funded_wallet(owner, 5_000), api.create_wallet(owner)
    payer_wallet = api.funded_wallet(payer, 5_000)
    request = api.p2p_request(owner, payer, destination, 300)
    paid = _final(
        api,
        owner,
        _post(api, "/transactions/transfer", owner, dry=False, json=_transfer_body(source, destination, 200)),
    )
    hold = _hold_final(api, owner, _post(api, "/holds", owner, dry=False, json=_hold_body(source, destination, 300)))
    key = f"counted-{uuid.uuid4().hex}"
    calls: list[tuple[str, User, dict[str, Any]]] = [
        ("/transactions/transfer", owner, _transfer_body(source, destination, 100)),
        ("/wallets/transfer", owner, _transfer_body(source, destination, 100)),
        (COMPAT_INTERNAL, owner, _transfer_body(source, destination, 100)),
        ("/transactions/batch", owner, {"transfers": [bulk_item(source, destination, 10) for _ in range(3)]}),
        (f"/wallets/{destination}/deposit", owner, {"amount": 100}),
        (f"/wallets/{source}/withdraw", owner, {"amount": 100}),
        (f"/p2p/requests/{request['id']}/settle", payer, {"source_wallet_id": payer_wallet}),
        (f"/api/vault-settlements/p2p/settle/{request['id']}", payer, {"source_wallet_id": payer_wallet}),
        (f"/transactions/{paid['id']}/refund", owner, {"amount": 50}),
        ("/holds", owner, _hold_body(source, destination, 100)),
        (f"/holds/{hold['id']}/capture", owner, {"amount": 10}),
        (f"/holds/{hold['id']}/void", owner, {}),
    ]
    woken: list[str] = []
    request_wake: Callable[..., bool] = wake.Wake.request

    def watched(self: wake.Wake, *args: Any, **kwargs: Any) -> bool:
        woken.append(self.key)
        return request_wake(self, *args, **kwargs)

    monkeypatch.setattr(wake.Wake, "request", watched)
    counts, queues, accepted = _quiet(db), _queues(), _accepted_total()

    for index, (path, user, body) in enumerate(calls):
        _predicted(_post(api, path, user, dry=True, key=f"{key}-{index}", json=body))

    assert _row_counts(db) == counts
    assert _queues() == queues
    assert woken == []
    assert _accepted_total() == accepted
    assert api.get(f"/p2p/requests/{request['id']}", payer).json["status"] == "REQUESTED"
    assert api.get(f"/holds/{hold['id']}", owner).json["status"] == "HELD"
    # The key was never claimed: the real call with it is new.
    assert _post(api, "/transactions/transfer", owner, dry=False, key=f"{key}-0", json=calls[0][2]).status_code == 202
    assert "vaultcraft:settle:wake" in woken  # the real call asks for a drain: the watch above sees it
