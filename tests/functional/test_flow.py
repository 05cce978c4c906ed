"""What a user does, through HTTP with a real worker: the happy path and every way a transfer fails."""

from __future__ import annotations


def test_insufficient_funds_fails_and_posts_nothing(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)

    response = api.transfer(owner, source, destination, 1_001)
    assert response.status_code == 202
    final = api.wait_final(owner, response.json["id"])

    assert final["status"] == "FAILED"
    assert final["failure_reason"] == "INSUFFICIENT_FUNDS"
    assert api.get(f"/transactions/{final['id']}/ledger", owner).json["items"] == []
    assert api.wallet(owner, source)["balance"] == 1_000
    assert api.wallet(owner, destination)["balance"] == 0


def test_locked_wallet_takes_no_debit_or_credit(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 5_000)
    destination = api.create_wallet(owner)
    assert api.patch(f"/wallets/{destination}", owner, json={"status": "LOCKED"}).json["status"] == "LOCKED"

    into_locked = api.wait_final(owner, api.transfer(owner, source, destination, 100).json["id"])
    assert (into_locked["status"], into_locked["failure_reason"]) == ("FAILED", "WALLET_NOT_ACTIVE")

    assert api.patch(f"/wallets/{source}", owner, json={"status": "LOCKED"}).status_code == 200
    assert api.patch(f"/wallets/{destination}", owner, json={"status": "ACTIVE"}).status_code == 200
    out_of_locked = api.wait_final(owner, api.transfer(owner, source, destination, 100).json["id"])
    assert (out_of_locked["status"], out_of_locked["failure_reason"]) == ("FAILED", "WALLET_NOT_ACTIVE")
    assert api.wallet(owner, source)["balance"] == 5_000


def test_currency_mismatch_fails(api):
    owner = api.signup()
    rupees = api.funded_wallet(owner, 5_000)
    dollars = api.create_wallet(owner, currency="USD")
    final = api.wait_final(owner, api.transfer(owner, rupees, dollars, 100).json["id"])
    assert (final["status"], final["failure_reason"]) == ("FAILED", "CURRENCY_MISMATCH")


def test_cancel_pending_then_never_settles(api, unpublished):
    owner = api.signup()
    source = api.funded_wallet(owner, 5_000)
    destination = api.create_wallet(owner)
    unpublished.start()
    pending = api.transfer(owner, source, destination, 700).json
    # A PENDING transfer reserves nothing: available_balance = balance - held_amount (holds only).
    assert api.wallet(owner, source)["available_balance"] == 5_000

    cancelled = api.post(f"/transactions/{pending['id']}/cancel", owner)
    assert cancelled.status_code == 200
    assert cancelled.json["status"] == "CANCELLED"
    assert cancelled.json["completed_at"] is not None

    # The lost message finally arrives: the worker must leave a cancelled intent alone.
    from tasks.settlement import enqueue_settlement

    assert enqueue_settlement(unpublished.ids)
    assert api.wait_final(owner, pending["id"], seconds=3)["status"] == "CANCELLED"
    assert api.post(f"/transactions/{pending['id']}/cancel", owner).status_code == 409
    assert api.wallet(owner, source)["balance"] == 5_000
    assert api.get(f"/transactions/{pending['id']}/ledger", owner).json["items"] == []


def test_cancel_after_completion_is_409(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 5_000)
    destination = api.create_wallet(owner)
    done = api.wait_final(owner, api.transfer(owner, source, destination, 1).json["id"])
    response = api.post(f"/transactions/{done['id']}/cancel", owner)
    assert response.status_code == 409
    assert response.json["error"]["code"] == "TRANSACTION_NOT_PENDING"
    assert api.wait_final(owner, done["id"])["status"] == "COMPLETED"


def test_withdrawal_returns_money_to_treasury_and_system_sums_to_zero(api):
    owner = api.signup()
    wallet = api.funded_wallet(owner, 9_000)
    response = api.post(f"/wallets/{wallet}/withdraw", owner, json={"amount": 4_000})
    assert response.status_code == 202
    assert response.json["type"] == "WITHDRAWAL"
    assert api.wait_final(owner, response.json["id"])["status"] == "COMPLETED"

    wallets = api.get("/wallets/?currency=INR", owner).json["items"]
    treasury = next(w for w in wallets if w["type"] == "SYSTEM" and w["name"] == "treasury")
    assert api.wallet(owner, wallet)["balance"] == 5_000
    assert treasury["balance"] == -5_000
    assert sum(w["balance"] for w in wallets) == 0


def test_contributor_may_debit_viewer_may_not(api):
    owner = api.signup()
    member = api.add_user(owner)
    shared = api.funded_wallet(owner, 3_000)
    own = api.create_wallet(member)

    assert api.transfer(member, shared, own, 100).status_code == 404  # not visible to the member yet
    grant = api.post(f"/wallets/{shared}/members", owner, json={"user_id": member.id, "role": "VIEWER"})
    assert grant.status_code == 201
    assert api.transfer(member, shared, own, 100).status_code == 403
    api.post(f"/wallets/{shared}/members", owner, json={"user_id": member.id, "role": "CONTRIBUTOR"})
    response = api.transfer(member, shared, own, 100)
    assert response.status_code == 202
    assert api.wait_final(member, response.json["id"])["status"] == "COMPLETED"
    assert api.wallet(member, own)["balance"] == 100


def test_close_only_at_zero_and_closed_is_final(api):
    owner = api.signup()
    wallet = api.funded_wallet(owner, 10)
    refused = api.patch(f"/wallets/{wallet}", owner, json={"status": "CLOSED"})
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "WALLET_NOT_EMPTY"

    empty = api.create_wallet(owner)
    assert api.patch(f"/wallets/{empty}", owner, json={"status": "CLOSED"}).status_code == 200
    assert api.patch(f"/wallets/{empty}", owner, json={"status": "ACTIVE"}).status_code == 409


def test_ledger_and_balance_as_of(api):
    owner = api.signup()
    wallet = api.funded_wallet(owner, 1_000)
    other = api.create_wallet(owner)
    first = api.wait_final(owner, api.transfer(owner, wallet, other, 100).json["id"])
    api.wait_final(owner, api.transfer(owner, wallet, other, 200).json["id"])

    entries = api.get(f"/wallets/{wallet}/ledger", owner).json["items"]
    assert [(e["direction"], e["amount"], e["balance_after"], e["wallet_version"]) for e in entries] == [
        ("DEBIT", 200, 700, 3),
        ("DEBIT", 100, 900, 2),
        ("CREDIT", 1_000, 1_000, 1),
    ]
    page = api.get(f"/wallets/{wallet}/ledger?limit=2", owner).json
    rest = api.get(f"/wallets/{wallet}/ledger?limit=2&cursor={page['next_cursor']}", owner).json
    assert [e["wallet_version"] for e in page["items"] + rest["items"]] == [3, 2, 1]
    assert rest["next_cursor"] is None

    as_of = api.get(f"/wallets/{wallet}/balance", owner, query_string={"as_of": first["completed_at"]}).json
    assert (as_of["balance"], as_of["version"]) == (900, 2)
    before_all = api.get(f"/wallets/{wallet}/balance", owner, query_string={"as_of": "2000-01-01T00:00:00Z"})
    assert before_all.json["balance"] == 0
    assert api.get(f"/wallets/{wallet}/balance", owner).json["balance"] == 700


def test_transaction_list_filters_and_pagination(api):
    owner = api.signup()
    wallet = api.funded_wallet(owner, 1_000)
    other = api.create_wallet(owner)
    ids = [api.wait_final(owner, api.transfer(owner, wallet, other, n).json["id"])["id"] for n in (1, 2, 3)]

    transfers = api.get("/transactions/?type=TRANSFER&limit=2", owner).json
    following = api.get(f"/transactions/?type=TRANSFER&limit=2&cursor={transfers['next_cursor']}", owner).json
    assert [t["id"] for t in transfers["items"] + following["items"]] == ids[::-1]
    by_wallet = api.get(f"/transactions/?wallet_id={other}", owner).json["items"]
    assert {t["id"] for t in by_wallet} == set(ids)
    assert api.get("/transactions/?status=FAILED", owner).json["items"] == []


def test_summary_totals_by_currency_and_type(api):
    owner = api.signup()
    api.funded_wallet(owner, 1_500)
    api.create_wallet(owner, type_="BONUS")
    summary = api.get("/wallets/summary", owner).json
    totals = {(t["currency"], t["type"]): t["balance_total"] for t in summary["totals"]}
    assert totals == {("INR", "PRIMARY"): 1_500, ("INR", "BONUS"): 0, ("INR", "SYSTEM"): -1_500}
    assert summary["counts_by_status"] == {"ACTIVE": 3}


def test_member_sees_only_own_and_shared_wallets(api):
    owner = api.signup()
    member = api.add_user(owner)
    owners_wallet = api.create_wallet(owner)
    members_wallet = api.create_wallet(member)
    visible = {w["id"] for w in api.get("/wallets/", member).json["items"]}
    assert visible == {members_wallet}
    assert api.get(f"/wallets/{owners_wallet}", member).status_code == 404
    assert {w["id"] for w in api.get("/wallets/", owner).json["items"]} >= {owners_wallet, members_wallet}


def test_member_cannot_deposit_or_create_system_wallets(api):
    owner = api.signup()
    member = api.add_user(owner)
    wallet = api.create_wallet(member)
    assert api.post(f"/wallets/{wallet}/deposit", member, json={"amount": 10}).status_code == 403
    assert api.post("/wallets/", member, json={"type": "SYSTEM", "currency": "INR"}).status_code == 403
    assert (
        api.post(
            "/organizations/users",
            member,
            json={"email": "x@example.com", "password": "violet kettle 1984", "full_name": "X", "role": "ADMIN"},
        ).status_code
        == 403
    )
