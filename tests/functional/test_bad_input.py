"""Bad input on every write endpoint: a clear 4xx in the contract's shape, never a 500, nothing written."""

from __future__ import annotations

import json
import logging
import random
import re
import uuid

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
        not_json = api.request(method, path, owner, data="amount=5", content_type="text/plain")
        _assert_refused(not_json, 400)
        assert not_json.json["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
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


def _json_operations(app) -> list[tuple[str, str]]:
    """Every operation of the API document that takes a JSON body, with its path parameters filled."""
    spec = app.test_client().get("/openapi.json").get_json()
    operations = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "requestBody" in operation:
                operations.append((method.upper(), re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)))
    assert len(operations) >= 19, operations
    return operations


def _client(app):
    """A client from an address of its own: the login limiter counts a body without an email against
    the address, and these tests send many, which must not use up the allowance of other tests."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(256)}"
    return client


def _send(app, method: str, path: str, owner, body: bytes, content_type: str = "application/json"):
    return _client(app).open(path, method=method, data=body, content_type=content_type, headers=owner.headers)


def _assert_house_shape(response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
    error = response.json["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] and error["message"]
    if code is not None:
        assert error["code"] == code, error


def _no_error_logged(caplog) -> None:
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


HUGE_INTEGER = "1" * 5000  # beyond Python's 4,300-digit limit on converting text to int


def test_an_integer_literal_of_thousands_of_digits_is_422_everywhere(api, app, db, world, caplog):
    owner, _source, _destination = world
    before = db.row_counts()
    for method, path in _json_operations(app):
        for body in (f'{{"amount": {HUGE_INTEGER}}}', f'{{"amount": -{HUGE_INTEGER}}}', f"[{HUGE_INTEGER}]"):
            response = _send(app, method, path, owner, body.encode())
            _assert_house_shape(response, 422, "VALIDATION_ERROR")
    # Without a token too: the login's own rate limiter reads the body before the view.
    login = _client(app).post(
        "/api/v1/auth/login", data=f'{{"email": {HUGE_INTEGER}}}', content_type="application/json"
    )
    _assert_house_shape(login, 422, "VALIDATION_ERROR")
    assert db.row_counts() == before
    _no_error_logged(caplog)


def test_deeply_nested_json_is_refused_clearly(api, app, db, world, caplog):
    owner, source, destination = world
    transfer = {"source_wallet_id": source, "destination_wallet_id": destination, "amount": 1}
    before = db.row_counts()
    nested = "[" * 100_000 + "]" * 100_000
    for method, path in _json_operations(app):
        _assert_house_shape(_send(app, method, path, owner, nested.encode()), 400, "INVALID_JSON")
    # Nesting the parser accepts but deep enough to matter for what walks it afterwards.
    for depth in (100, 900):
        metadata = '{"a": ' + "[" * depth + "]" * depth + "}"
        body = json.dumps(transfer)[:-1] + f', "metadata": {metadata}}}'
        response = api.post("/transactions/transfer", owner, data=body, content_type="application/json")
        _assert_house_shape(response, 400, "INVALID_JSON")
    login = _client(app).post("/api/v1/auth/login", data=nested, content_type="application/json")
    _assert_house_shape(login, 400, "INVALID_JSON")
    assert db.row_counts() == before
    _no_error_logged(caplog)


def test_invalid_utf8_and_malformed_json_are_400_invalid_json(api, app, db, world, caplog):
    owner, source, destination = world
    transfer = {"source_wallet_id": source, "destination_wallet_id": destination, "amount": 1}
    before = db.row_counts()
    for method, path in _json_operations(app):
        for body in (b'{"email": "\xff\xfe"}', b"{not json", b'{"amount": 1,}'):
            response = _send(app, method, path, owner, body)
            _assert_house_shape(response, 400, "INVALID_JSON")
            assert "browser" not in response.json["error"]["message"], response.json
    # Valid JSON, but an escaped lone surrogate decodes to a string no UTF-8 encoder (or database) takes.
    signup = {
        "email": "lone@example.com",
        "password": "long enough pw",
        "full_name": "\ud800",
        "organization_name": "O",
    }
    for path, text in [
        ("/api/v1/auth/signup", json.dumps(signup)),
        ("/api/v1/wallets/", json.dumps({"type": "PRIMARY", "name": "pay \udfff"})),
        ("/api/v1/transactions/transfer", json.dumps({**transfer, "metadata": {"\udc80": "key"}})),
    ]:
        assert "\\ud" in text  # json.dumps escapes it, as a client would send it
        _assert_house_shape(_send(app, "POST", path, owner, text.encode()), 400, "INVALID_JSON")
    assert db.row_counts() == before
    _no_error_logged(caplog)


def test_a_body_that_is_not_application_json_is_400_unsupported_media_type(api, app, world):
    owner, source, destination = world
    body = json.dumps({"source_wallet_id": source, "destination_wallet_id": destination, "amount": 1}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = _send(app, "POST", "/api/v1/transactions/transfer", owner, body, content_type)
        _assert_house_shape(response, 400, "UNSUPPORTED_MEDIA_TYPE")
    login = json.dumps({"email": owner.email, "password": owner.password})
    response = _client(app).post("/api/v1/auth/login", data=login, content_type="text/plain")
    _assert_house_shape(response, 400, "UNSUPPORTED_MEDIA_TYPE")
    # A JSON media type with parameters, or a +json type, is JSON.
    charset = _send(app, "POST", "/api/v1/transactions/transfer", owner, body, "application/json; charset=utf-8")
    assert charset.status_code == 202, charset.json


def test_every_framework_error_has_the_house_shape(api, app, world):
    owner, _source, _destination = world
    client = app.test_client()
    _assert_house_shape(client.get("/no/such/page"), 404, "NOT_FOUND")
    _assert_house_shape(client.get("/api/v1/no/such/thing", headers=owner.headers), 404, "NOT_FOUND")
    _assert_house_shape(client.delete("/api/v1/auth/login"), 405, "METHOD_NOT_ALLOWED")
    _assert_house_shape(client.put("/health"), 405, "METHOD_NOT_ALLOWED")
    oversized = b'{"amount": "' + b"1" * app.config["MAX_CONTENT_LENGTH"] + b'"}'
    too_large = client.post(
        "/api/v1/transactions/transfer", data=oversized, content_type="application/json", headers=owner.headers
    )
    _assert_house_shape(too_large, 413, "PAYLOAD_TOO_LARGE")
