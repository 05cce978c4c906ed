"""What the write path saves per request must not change what it answers: a remembered token still
expires and is still revoked, the write limit's headers still count, and a pooled connection the
server ended is replaced before a request uses it; an accepted transfer is one statement,
committed by the server as it answers, and the connection goes back to the pool in transactions."""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg
from flask_jwt_extended import create_access_token, decode_token
from sqlalchemy import event, text

from models.db import get_engine


def _transfer(api, user, source, destination, headers=None):
    body = {"source_wallet_id": source, "destination_wallet_id": destination, "amount": 5}
    return api.post("/transactions/transfer", user, json=body, headers=headers or {})


def test_a_token_verified_before_still_expires(api, app):
    owner = api.signup()
    source, destination = api.create_wallet(owner), api.create_wallet(owner)
    with app.app_context():
        login = {"fam": decode_token(owner.token)["fam"]}  # of the owner's login, so only expiry counts
        token = create_access_token(identity=owner.id, expires_delta=timedelta(seconds=2), additional_claims=login)
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.get("/auth/me", headers=bearer).status_code == 200
    accepted = _transfer(api, None, source, destination, bearer)
    assert accepted.status_code == 202, accepted.json

    time.sleep(3.1)  # expiry is whole seconds: a 2 s token may have lived 1 s when first used

    for response in (api.get("/auth/me", headers=bearer), _transfer(api, None, source, destination, bearer)):
        assert (response.status_code, response.json["error"]["code"]) == (401, "TOKEN_EXPIRED")


def test_a_token_verified_before_is_still_revoked(api):
    owner = api.signup()
    source, destination = api.create_wallet(owner), api.create_wallet(owner)
    assert _transfer(api, owner, source, destination).status_code == 202
    assert api.post("/auth/logout", owner).status_code == 200
    refused = _transfer(api, owner, source, destination)
    assert (refused.status_code, refused.json["error"]["code"]) == (401, "TOKEN_REVOKED")


def test_the_write_limit_headers_count_each_write(api, app, monkeypatch):
    monkeypatch.setitem(app.config, "WRITE_LIMIT_PER_TOKEN", "3 per minute")
    owner = api.signup()
    source, destination = api.create_wallet(owner), api.create_wallet(owner)  # counted per endpoint
    answers = [_transfer(api, owner, source, destination) for _ in range(4)]
    assert [r.status_code for r in answers] == [202, 202, 202, 429]
    assert [r.headers["X-RateLimit-Limit"] for r in answers] == ["3"] * 4
    assert [r.headers["X-RateLimit-Remaining"] for r in answers] == ["2", "1", "0", "0"]
    now = time.time()
    for response in answers:
        assert now < int(response.headers["X-RateLimit-Reset"]) <= now + 61
        assert 0 < int(response.headers["Retry-After"]) <= 60


def test_a_pooled_connection_the_server_ended_is_replaced_before_a_request_uses_it(api):
    owner = api.signup()
    source, destination = api.create_wallet(owner), api.create_wallet(owner)
    engine = get_engine()
    engine.dispose()
    with engine.connect() as connection:  # now the pool's only connection
        backend = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    admin_url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        # What a restart does to every session: the server says so and closes the socket.
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", (backend,)).fetchone() == (True,)

    response = _transfer(api, owner, source, destination)

    assert response.status_code == 202, response.json


def test_an_accepted_transfer_is_one_statement_committed_as_it_answers(api):
    owner = api.signup()
    source, destination = api.create_wallet(owner), api.create_wallet(owner)
    engine = get_engine()
    sent = []

    def on_execute(_connection, cursor, statement, *_args):
        # On an autocommit connection the driver sends no BEGIN before it, nor COMMIT after.
        sent.append((statement.split()[0], cursor.connection.autocommit))

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        response = _transfer(api, owner, source, destination, {"Idempotency-Key": "one-round-trip"})
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)

    assert response.status_code == 202, response.json
    assert sent == [("WITH", True)]
    with engine.connect() as connection:
        written = connection.execute(
            text(
                "SELECT (SELECT count(*) FROM transactions WHERE id = :id AND idempotency_key = 'one-round-trip'),"
                " (SELECT count(*) FROM idempotency_keys WHERE transaction_id = :id),"
                " (SELECT count(*) FROM audit_logs WHERE target_id = CAST(:id AS text) AND action = 'transfer.created')"
            ),
            {"id": response.json["id"]},
        ).one()
        assert tuple(written) == (1, 1, 1)
        driver = connection.connection.driver_connection
        assert driver is not None and not driver.autocommit  # the pool reset it
