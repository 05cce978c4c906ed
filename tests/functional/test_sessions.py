"""Sessions that can be ended: refresh rotation with reuse detection, logout everywhere, password
change, and deactivating a user (OAuth 2.0 Security BCP, refresh token rotation)."""

from __future__ import annotations

from tests.functional.test_audit import audit_rows

STRONG = "plum-orbit-lantern"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _me(api, token: str):
    return api.get("/auth/me", headers=_bearer(token))


def _refresh(api, refresh_token: str):
    return api.post("/auth/refresh", headers=_bearer(refresh_token))


def _transfer_status(api, user, token: str) -> int:
    """The hot path (its token check is cached per process) must refuse an ended session too."""
    source, destination = api.create_wallet(user), api.create_wallet(user)
    body = {"source_wallet_id": source, "destination_wallet_id": destination, "amount": 1, "currency": "INR"}
    return api.post("/transactions/transfer", headers=_bearer(token), json=body).status_code


def test_refresh_rotates_the_refresh_token_and_spends_the_old_one(api):
    owner = api.signup()
    first = _refresh(api, owner.refresh_token)
    assert first.status_code == 200, first.json
    assert set(first.json) == {"access_token", "refresh_token"}
    assert first.json["refresh_token"] != owner.refresh_token
    second = _refresh(api, first.json["refresh_token"])
    assert second.status_code == 200
    assert _me(api, second.json["access_token"]).status_code == 200


def test_reusing_a_spent_refresh_token_revokes_the_whole_login(api):
    owner = api.signup()
    other_device = api.login(owner.email, owner.password, owner.id, owner.organization_id)
    rotated = _refresh(api, owner.refresh_token).json
    reused = _refresh(api, owner.refresh_token)
    assert (reused.status_code, reused.json["error"]["code"]) == (401, "REFRESH_TOKEN_REUSED")
    # Every token of that login is dead: the first access token, and what the rotation gave.
    assert _me(api, owner.token).status_code == 401
    assert _me(api, rotated["access_token"]).status_code == 401
    assert _refresh(api, rotated["refresh_token"]).status_code == 401
    assert _transfer_status(api, other_device, rotated["access_token"]) == 401
    # Another login of the same user is untouched.
    assert _me(api, other_device.token).status_code == 200
    assert _refresh(api, other_device.refresh_token).status_code == 200


def test_logout_all_ends_every_session_of_the_caller_only(api):
    owner = api.signup()
    phone = api.login(owner.email, owner.password, owner.id, owner.organization_id)
    colleague = api.add_user(owner)
    assert _transfer_status(api, phone, phone.token) == 202  # the hot path has seen this token
    assert api.post("/auth/logout-all", owner).status_code == 200
    for token in (owner.token, phone.token):
        assert _me(api, token).status_code == 401
    assert _transfer_status(api, colleague, phone.token) == 401
    for refresh_token in (owner.refresh_token, phone.refresh_token):
        assert _refresh(api, refresh_token).status_code == 401
    assert _me(api, colleague.token).status_code == 200
    again = api.login(owner.email, owner.password, owner.id, owner.organization_id)
    assert _me(api, again.token).status_code == 200
    assert [r["action"] for r in audit_rows(api, again, action="auth.logout_all")] == ["auth.logout_all"]


def test_password_change_ends_every_other_session(api):
    owner = api.signup()
    laptop = api.login(owner.email, owner.password, owner.id, owner.organization_id)
    wrong = api.post("/auth/password", owner, json={"current_password": "not my password", "new_password": STRONG})
    assert (wrong.status_code, wrong.json["error"]["code"]) == (403, "WRONG_PASSWORD")
    assert _me(api, laptop.token).status_code == 200
    weak = api.post("/auth/password", owner, json={"current_password": owner.password, "new_password": owner.email})
    assert (weak.status_code, weak.json["error"]["code"]) == (422, "WEAK_PASSWORD")

    changed = api.post("/auth/password", owner, json={"current_password": owner.password, "new_password": STRONG})
    assert changed.status_code == 200, changed.json
    assert _me(api, owner.token).status_code == 200  # the caller's own session goes on
    assert _refresh(api, owner.refresh_token).status_code == 200
    assert _me(api, laptop.token).status_code == 401
    assert _refresh(api, laptop.refresh_token).status_code == 401
    assert api.post("/auth/login", json={"email": owner.email, "password": owner.password}).status_code == 401
    assert api.post("/auth/login", json={"email": owner.email, "password": STRONG}).status_code == 200
    assert [r["action"] for r in audit_rows(api, owner, action="auth.password_changed")] == ["auth.password_changed"]


def _set_active(api, admin, user, active: bool):
    return api.patch(f"/organizations/users/{user.id}", admin, json={"active": active})


def test_a_deactivated_user_is_locked_out_at_once_and_can_be_restored(api):
    owner = api.signup()
    member = api.add_user(owner)
    assert _transfer_status(api, member, member.token) == 202
    response = _set_active(api, owner, member, False)
    assert response.status_code == 200, response.json
    assert response.json["active"] is False
    assert _me(api, member.token).status_code == 401
    assert _transfer_status(api, owner, member.token) == 401
    assert _refresh(api, member.refresh_token).status_code == 401
    login = api.post("/auth/login", json={"email": member.email, "password": member.password})
    assert (login.status_code, login.json["error"]["code"]) == (401, "USER_DEACTIVATED")

    assert _set_active(api, owner, member, True).json["active"] is True
    assert _me(api, member.token).status_code == 401  # old tokens stay dead; a new login works
    again = api.login(member.email, member.password, member.id, member.organization_id)
    assert _me(api, again.token).status_code == 200
    actions = [r["action"] for r in audit_rows(api, owner, target_id=member.id)]
    assert {"user.deactivated", "user.reactivated"} <= set(actions)


def test_who_may_deactivate_whom(api):
    owner = api.signup()
    admin = api.add_user(owner, "ADMIN")
    member = api.add_user(owner, "MEMBER")
    stranger_owner = api.signup()
    stranger = api.add_user(stranger_owner)

    cases = [
        (admin, owner, 403, "CANNOT_DEACTIVATE_OWNER"),
        (owner, owner, 403, "CANNOT_DEACTIVATE_SELF"),
        (admin, admin, 403, "CANNOT_DEACTIVATE_SELF"),
        (member, admin, 403, "ROLE_REQUIRED"),
        (owner, stranger, 404, "USER_NOT_FOUND"),
    ]
    for actor, target, status, code in cases:
        response = _set_active(api, actor, target, False)
        assert (response.status_code, response.json["error"]["code"]) == (status, code), (actor.email, target.email)
    for user in (owner, admin, member, stranger):
        assert _me(api, user.token).status_code == 200
    assert _set_active(api, admin, member, False).status_code == 200
    bad = api.patch(f"/organizations/users/{member.id}", owner, json={"active": "no"})
    assert bad.status_code == 422
