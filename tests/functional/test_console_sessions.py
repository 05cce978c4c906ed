"""Console logins: the same accounts and limits as the API, a cookie that is HttpOnly, SameSite=Lax
and Secure over https, expiry on the server, a logout that makes a replayed cookie useless, and CSRF
tokens on every form (the JSON API untouched)."""

from __future__ import annotations

import time

import pytest

from tests.client import PASSWORD
from tests.console import Console, signed_in


def _set_cookie(response) -> str:
    return next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("vaultcraft_console="))


def test_login_form_has_the_contract_hooks(app):
    page = Console(app).get("/console/login").get_data(as_text=True)
    assert 'name="email"' in page and 'name="password"' in page
    assert page.count('type="submit"') == 1


def test_pages_send_a_stranger_to_the_login_form(app):
    response = Console(app).get("/console/wallets")
    assert response.status_code == 302 and response.location.startswith("/console/login")


def test_login_sets_a_protected_cookie_and_opens_the_console(app, api):
    owner = api.signup()
    console = Console(app)
    console.get("/console/login")
    response = console.post("/console/login", {"email": owner.email, "password": owner.password})
    assert response.status_code == 302 and response.location == "/console/"
    cookie = _set_cookie(response)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here; over https it is Secure (next test)
    assert console.get("/console/").status_code == 200


def test_cookie_is_secure_over_https(app, api):
    owner = api.signup()
    console = Console(app)
    console.get("/console/login", base_url="https://localhost")
    response = console.post(
        "/console/login",
        {"email": owner.email, "password": owner.password},
        base_url="https://localhost",
        headers={"Referer": "https://localhost/console/login"},  # flask-wtf checks it over https
    )
    assert response.status_code == 302
    assert "; Secure" in _set_cookie(response)


def test_wrong_password_is_refused_and_audited_like_the_api(app, api, db):
    owner = api.signup()
    console = Console(app)
    console.get("/console/login")
    response = console.post("/console/login", {"email": owner.email, "password": "not the password"})
    assert response.status_code == 401 and "Wrong email or password" in response.get_data(as_text=True)
    assert console.get("/console/").status_code == 302
    failures = db.scalar(
        "SELECT COUNT(*) FROM audit_logs WHERE action = 'auth.login_failed' AND target_id = :id", id=owner.id
    )
    assert failures == 1


def test_logout_makes_a_replayed_cookie_useless(app, api, db):
    owner = api.signup()
    console = signed_in(app, owner)
    stolen = console.cookie()
    assert stolen and console.get("/console/").status_code == 200
    response = console.logout()
    assert response.status_code == 302 and "signed-out" in response.location
    replay = Console(app)
    replay.http.set_cookie("vaultcraft_console", stolen, path="/console")
    answer = replay.get("/console/wallets")
    assert answer.status_code == 302 and answer.location.startswith("/console/login")
    assert db.scalar("SELECT COUNT(*) FROM audit_logs WHERE action = 'auth.logout' AND actor_id = :id", id=owner.id)


def test_logout_everywhere_from_the_api_ends_console_logins(app, api):
    owner = api.signup()
    console = signed_in(app, owner)
    assert api.post("/auth/logout-all", owner).status_code == 200
    assert console.get("/console/").status_code == 302


def test_an_idle_login_expires(app, api, monkeypatch):
    owner = api.signup()
    console = signed_in(app, owner)
    assert console.get("/console/").status_code == 200
    monkeypatch.setitem(app.config, "CONSOLE_IDLE_SECONDS", 1)
    time.sleep(2.1)
    response = console.get("/console/")
    assert response.status_code == 302 and "reason=expired" in response.location


def test_a_login_expires_after_its_absolute_lifetime_even_when_used(app, api, monkeypatch):
    owner = api.signup()
    console = signed_in(app, owner)
    monkeypatch.setitem(app.config, "CONSOLE_SESSION_SECONDS", 2)
    assert console.get("/console/").status_code == 200
    time.sleep(1.2)
    assert console.get("/console/").status_code == 200
    time.sleep(1.2)
    assert console.get("/console/").status_code == 302


def test_a_deactivated_user_is_signed_out(app, api):
    owner = api.signup()
    member = api.add_user(owner, "MEMBER")
    console = signed_in(app, member)
    assert api.patch(f"/organizations/users/{member.id}", owner, json={"active": False}).status_code == 200
    assert console.get("/console/").status_code == 302


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_a_post_without_a_valid_csrf_token_is_refused(app, api, token):
    owner = api.signup()
    console = signed_in(app, owner)
    form = {} if token is None else {"csrf_token": token}
    response = console.post("/console/logout", form, token=False)
    assert response.status_code == 400 and "security token" in response.get_data(as_text=True)
    assert console.get("/console/").status_code == 200  # still signed in: nothing happened


def test_the_login_form_itself_needs_its_token(app, api):
    owner = api.signup()
    console = Console(app)
    response = console.post("/console/login", {"email": owner.email, "password": PASSWORD}, token=False)
    assert response.status_code == 400
    assert console.get("/console/").status_code == 302


def test_the_json_api_needs_no_csrf_token(app, api):
    owner = api.signup()
    response = api.post("/wallets/", owner, json={"type": "PRIMARY", "currency": "INR"})
    assert response.status_code == 201
    login = api.post("/auth/login", json={"email": owner.email, "password": owner.password})
    assert login.status_code == 200 and "Set-Cookie" not in login.headers


def test_console_logins_count_against_the_api_login_limits(app, api, monkeypatch):
    owner = api.signup()
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_ACCOUNT_ADDRESS", "2 per minute")
    console = Console(app)
    console.get("/console/login")
    codes = [
        console.post("/console/login", {"email": owner.email, "password": "wrong guess"}).status_code for _ in range(3)
    ]
    assert codes == [401, 401, 429]
    # The API's login for the same account from the same address has spent the same allowance.
    assert api.post("/auth/login", json={"email": owner.email, "password": owner.password}).status_code == 429


def test_next_only_leads_inside_the_console(app, api):
    owner = api.signup()
    console = Console(app)
    console.get("/console/login")
    response = console.post(
        "/console/login", {"email": owner.email, "password": owner.password, "next": "https://evil.example/"}
    )
    assert response.location == "/console/"
