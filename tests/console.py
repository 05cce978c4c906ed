"""A browser-like client for the console: a cookie jar, the CSRF token from each page, form posts."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from werkzeug.test import TestResponse

from tests.client import User

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_DATA_ID = re.compile(r'data-id="([^"]+)"')


class Console:
    def __init__(self, app: Flask) -> None:
        self.http = app.test_client()
        self.csrf: str | None = None

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        response = self.http.get(path, **kwargs)
        self._remember_token(response)
        return response

    def post(self, path: str, data: dict[str, Any] | None = None, *, token: bool = True, **kwargs: Any) -> TestResponse:
        form = dict(data or {})
        if token and self.csrf:
            form.setdefault("csrf_token", self.csrf)
        response = self.http.post(path, data=form, **kwargs)
        self._remember_token(response)
        return response

    def _remember_token(self, response: TestResponse) -> None:
        found = _CSRF.search(response.get_data(as_text=True)) if response.mimetype == "text/html" else None
        if found:
            self.csrf = found.group(1)

    def login(self, user: User) -> TestResponse:
        self.get("/console/login")
        response = self.post("/console/login", {"email": user.email, "password": user.password})
        assert response.status_code == 302, response.get_data(as_text=True)
        return response

    def logout(self) -> TestResponse:
        self.get("/console/")
        return self.post("/console/logout")

    def cookie(self) -> str | None:
        found = self.http.get_cookie("vaultcraft_console", path="/console")
        return found.value if found else None


def data_ids(response: TestResponse) -> list[str]:
    return _DATA_ID.findall(response.get_data(as_text=True))


def signed_in(app: Flask, user: User) -> Console:
    console = Console(app)
    console.login(user)
    return console
