"""Accounts and tokens."""

from __future__ import annotations

import uuid


def test_signup_login_me(api):
    owner = api.signup("Acme")
    me = api.get("/auth/me", owner).json
    assert me == {**me, "id": owner.id, "email": owner.email, "role": "OWNER", "organization_id": owner.organization_id}
    again = api.login(owner.email.upper(), owner.password, owner.id, owner.organization_id)
    assert api.get("/auth/me", again).status_code == 200


def test_duplicate_email_is_409_and_short_password_422(api):
    owner = api.signup()
    duplicate = api.post(
        "/auth/signup",
        json={
            "email": owner.email.upper(),
            "password": "violet kettle 1984",
            "full_name": "B",
            "organization_name": "B",
        },
    )
    assert duplicate.status_code == 409
    short = api.post(
        "/auth/signup",
        json={"email": "new@example.com", "password": "short", "full_name": "B", "organization_name": "B"},
    )
    assert short.status_code == 422
    assert "password" in short.json["error"]["details"]


def test_wrong_credentials_are_401(api):
    owner = api.signup()
    assert api.post("/auth/login", json={"email": owner.email, "password": "wrong password"}).status_code == 401
    assert api.post("/auth/login", json={"email": "nobody@example.com", "password": "whatever1"}).status_code == 401


def test_refresh_gives_a_working_access_token(api):
    owner = api.signup()
    response = api.post("/auth/refresh", headers={"Authorization": f"Bearer {owner.refresh_token}"})
    assert response.status_code == 200
    token = response.json["access_token"]
    assert api.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # A refresh token is not an access token, and an access token cannot refresh.
    assert api.get("/auth/me", headers={"Authorization": f"Bearer {owner.refresh_token}"}).status_code == 401
    assert api.post("/auth/refresh", owner).status_code == 401


def test_logout_revokes_the_token_and_its_refresh_token(api):
    owner = api.signup()
    assert api.post("/auth/logout", owner).status_code == 200
    revoked = api.get("/auth/me", owner)
    assert revoked.status_code == 401
    assert revoked.json["error"]["code"] == "TOKEN_REVOKED"
    assert api.post("/auth/refresh", headers={"Authorization": f"Bearer {owner.refresh_token}"}).status_code == 401


def test_missing_and_garbage_tokens_are_401(api):
    assert api.get("/auth/me").status_code == 401
    assert api.get("/wallets/", headers={"Authorization": "Bearer not.a.token"}).status_code == 401
    assert api.get("/wallets/").json["error"]["code"] == "UNAUTHENTICATED"


def test_admin_adds_users_members_cannot(api):
    owner = api.signup()
    admin = api.add_user(owner, "ADMIN")
    member = api.add_user(admin, "MEMBER")
    assert api.get("/auth/me", member).json["role"] == "MEMBER"
    owner_again = api.post(
        "/organizations/users",
        owner,
        json={"email": "o2@example.com", "password": "violet kettle 1984", "full_name": "O", "role": "OWNER"},
    )
    assert owner_again.status_code == 422


def _signup_body(email: str, password: str) -> dict[str, str]:
    return {"email": email, "password": password, "full_name": "Asha Raman", "organization_name": "Quillfeather Ltd"}


def test_common_and_guessable_passwords_are_weak(api, db):
    email = f"asha.raman-{uuid.uuid4().hex[:8]}@example.com"
    guessable = [
        "short",
        "12345678",
        "password",
        " " * 8,
        "qwertyuiop",
        email,
        email.split("@")[0],
        "Asha Raman",
        "asharaman",
        "Quillfeather Ltd",
        "quillfeather1",
        "vaultcraft",
    ]
    users_before = db.scalar("SELECT count(*) FROM users")
    for password in guessable:
        response = api.post("/auth/signup", json=_signup_body(email, password))
        assert (response.status_code, response.json["error"]["code"]) == (422, "WEAK_PASSWORD"), password
        assert response.json["error"]["details"]["password"], password
    assert db.scalar("SELECT count(*) FROM users") == users_before
    # No composition rules: a long passphrase of plain words is fine.
    assert api.post("/auth/signup", json=_signup_body(email, "umbrella sparrow gravel")).status_code == 201


def test_a_new_user_of_an_organisation_gets_no_weak_password(api):
    owner = api.signup("Quillfeather Ltd")
    for password in ("password1", "Quillfeather", "Welcome Colleague"):
        response = api.post(
            "/organizations/users",
            owner,
            json={"email": "welcome.colleague@example.com", "password": password, "full_name": "Welcome Colleague"}
            | {"role": "MEMBER"},
        )
        assert (response.status_code, response.json["error"]["code"]) == (422, "WEAK_PASSWORD"), password


def test_the_bearer_scheme_is_case_insensitive(api):
    """RFC 6750 (via RFC 7235): the auth-scheme is case-insensitive, on reads and on the write path alike."""
    owner = api.signup()
    source = api.funded_wallet(owner, 100)
    destination = api.create_wallet(owner)
    for scheme in ("bearer", "BEARER", "bEaReR"):
        me = api.get("/auth/me", headers={"Authorization": f"{scheme} {owner.token}"})
        assert me.status_code == 200, (scheme, me.json)
        transfer = api.post(
            "/transactions/transfer",
            headers={"Authorization": f"{scheme}  {owner.token}"},
            json={"source_wallet_id": source, "destination_wallet_id": destination, "amount": 1},
        )
        assert transfer.status_code == 202, (scheme, transfer.json)
    refreshed = api.post("/auth/refresh", headers={"Authorization": f"bearer {owner.refresh_token}"})
    assert refreshed.status_code == 200, refreshed.json
    for refused in (f"Token {owner.token}", f"Bearerx {owner.token}", f"bearer{owner.token}", owner.token):
        assert api.get("/auth/me", headers={"Authorization": refused}).status_code == 401, refused
