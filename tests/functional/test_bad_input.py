"""Bad input on every write endpoint: a clear 4xx in the contract's shape, never a 500, nothing written."""

from __future__ import annotations

import pytest

BAD_AMOUNTS = [10.5, 10.0, "100", 0, -5, True, None, 10**20, [1], {"minor": 1}]


@pytest.fixture
def world(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    return owner, source, destination


def _assert_refused(response, status=422):
    assert response.status_code == status, (response.status_code, response.json)
    error = response.json["error"]
    assert error["code"] and error["message"]


def _write_endpoints(source: str, destination: str) -> list[tuple[str, str, dict]]:
    transfer = {"source_wallet_id": source, "destination_wallet_id": destination, "amount": 100, "currency": "INR"}
    return [
        ("POST", "/transactions/transfer", transfer),
        ("POST", "/wallets/transfer", transfer),
        ("POST", f"/wallets/{source}/deposit", {"amount": 100}),
        ("POST", f"/wallets/{source}/withdraw", {"amount": 100}),
    ]


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=repr)
def test_money_must_be_a_positive_integer(api, db, world, amount):
    owner, source, destination = world
    before = db.row_counts()
    for method, path, body in _write_endpoints(source, destination):
        response = api.request(method, path, owner, json={**body, "amount": amount})
        _assert_refused(response)
        assert "amount" in response.json["error"]["details"], path
    assert db.row_counts() == before


def test_transfer_field_rules(api, db, world):
    owner, source, destination = world
    base = {"source_wallet_id": source, "destination_wallet_id": destination, "amount": 100, "currency": "INR"}
    before = db.row_counts()
    cases = [
        {**base, "source_wallet_id": "not-a-uuid"},
        {**base, "currency": "inr"},
        {**base, "currency": "RUPEES"},
        {**base, "description": "x" * 501},
        {**base, "metadata": {"k": "v" * 5000}},
        {**base, "metadata": "not an object"},
        {**base, "status": "COMPLETED"},  # mass assignment: unknown fields are refused
        {**base, "organization_id": owner.organization_id},
        {k: v for k, v in base.items() if k != "destination_wallet_id"},
        {**base, "destination_wallet_id": source},
    ]
    for body in cases:
        _assert_refused(api.post("/transactions/transfer", owner, json=body))
    _assert_refused(api.post("/transactions/transfer", owner, json=base, headers={"Idempotency-Key": "k" * 300}))
    assert db.row_counts() == before


def test_the_nul_character_is_refused_as_the_field_s_own_error(api, db, world):
    """Postgres text cannot hold U+0000; the field says so, instead of the database refusing the request."""
    owner, source, destination = world
    base = {"source_wallet_id": source, "destination_wallet_id": destination, "amount": 100}
    before = db.row_counts()
    for field, body in [
        ("description", {**base, "description": "pay\u0000ment"}),
        ("metadata", {**base, "metadata": {"order": "a\u0000b"}}),
    ]:
        response = api.post("/transactions/transfer", owner, json=body)
        _assert_refused(response)
        assert "NUL" in str(response.json["error"]["details"][field]), response.json
    assert db.row_counts() == before


def test_a_backslash_before_u0000_is_text_not_the_nul_character(api, world):
    owner, source, destination = world
    written = {"description": "C:\\u0000dir", "metadata": {"path": "C:\\u0000dir"}}
    body = {"source_wallet_id": source, "destination_wallet_id": destination, "amount": 100, **written}
    response = api.post("/transactions/transfer", owner, json=body)
    assert response.status_code == 202, response.json
    assert {key: response.json[key] for key in written} == written


def test_unknown_wallets_are_404(api, db, world):
    owner, source, _ = world
    nowhere = "00000000-0000-4000-8000-000000000000"
    body = {"source_wallet_id": source, "destination_wallet_id": nowhere, "amount": 1}
    _assert_refused(api.post("/transactions/transfer", owner, json=body), 404)
    _assert_refused(api.post(f"/wallets/{nowhere}/deposit", owner, json={"amount": 1}), 404)


def test_malformed_bodies(api, db, world):
    owner, source, destination = world
    before = db.row_counts()
    for method, path, _ in _write_endpoints(source, destination):
        malformed = api.request(method, path, owner, data="{not json", content_type="application/json")
        assert malformed.status_code in (400, 422), path
        assert malformed.json["error"]["code"]
        _assert_refused(api.request(method, path, owner, json=[1, 2, 3]))
        _assert_refused(api.request(method, path, owner, data="amount=5", content_type="text/plain"))
        huge = api.request(method, path, owner, data="[" + "1," * 600_000 + "1]", content_type="application/json")
        _assert_refused(huge, 413)
    assert db.row_counts() == before


def test_other_write_endpoints_validate(api, db, world):
    owner, source, _ = world
    before = db.row_counts()
    cases = [
        ("POST", "/wallets/", {"type": "GOLD", "currency": "INR"}),
        ("POST", "/wallets/", {"type": "PRIMARY", "currency": "IN"}),
        ("POST", "/wallets/", {"type": "PRIMARY", "name": "n" * 101}),
        ("POST", "/wallets/", {"type": "PRIMARY", "balance": 10**6}),
        ("POST", "/wallets/", {"type": "PRIMARY", "owner_id": owner.id}),
        ("PATCH", f"/wallets/{source}", {"status": "FROZEN"}),
        ("PATCH", f"/wallets/{source}", {"balance": 0}),
        ("POST", f"/wallets/{source}/members", {"user_id": owner.id, "role": "GOD"}),
        ("POST", f"/wallets/{source}/members", {"user_id": "x", "role": "VIEWER"}),
        (
            "POST",
            "/organizations/users",
            {"email": "bad", "password": "violet kettle 1984", "full_name": "A", "role": "ADMIN"},
        ),
        (
            "POST",
            "/organizations/users",
            {"email": "a@b.co", "password": "violet kettle 1984", "full_name": "A", "role": "OWNER"},
        ),
        ("POST", "/auth/signup", {"email": "a@b.co", "password": "x" * 73, "full_name": "A", "organization_name": "O"}),
        ("POST", "/auth/signup", {"email": "a@b.co", "password": "é" * 40, "full_name": "A", "organization_name": "O"}),
        (
            "POST",
            "/auth/signup",
            {"email": "a@b.co", "password": "violet kettle 1984", "full_name": "", "organization_name": "O"},
        ),
        ("POST", "/auth/login", {"email": "a@b.co"}),
    ]
    for method, path, body in cases:
        _assert_refused(api.request(method, path, owner, json=body))
    assert db.row_counts() == before
    assert api.get(f"/wallets/{source}?wait=abc", owner).status_code == 200  # unknown query args are ignored
    _assert_refused(api.get("/transactions/?limit=0", owner))
    _assert_refused(api.get("/transactions/?limit=501", owner))
    _assert_refused(api.get("/transactions/?cursor=garbage", owner))
    _assert_refused(api.get(f"/wallets/{source}/balance?as_of=yesterday", owner))
    _assert_refused(api.get(f"/transactions/{source}?wait=31", owner))
