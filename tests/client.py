"""A small client for the HTTP API, so tests read as what a user does."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from flask import Flask
from werkzeug.test import TestResponse

FINAL = {"COMPLETED", "FAILED", "CANCELLED"}
# Every test user's password: one the strength check accepts (and quick for it to judge).
PASSWORD = "violet kettle 1984"


def _json(response: TestResponse) -> Any:
    return response.json


@dataclass
class User:
    id: str
    email: str
    password: str
    organization_id: str
    token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class ApiClient:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.http = app.test_client()

    def request(
        self, method: str, path: str, user: User | None = None, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> TestResponse:
        merged = {**(user.headers if user else {}), **(headers or {})}
        # A fresh test client per call keeps calls from many threads independent.
        return self.app.test_client().open(f"/api/v1{path}", method=method, headers=merged, **kwargs)

    def get(self, path: str, user: User | None = None, **kwargs: Any) -> TestResponse:
        return self.request("GET", path, user, **kwargs)

    def post(self, path: str, user: User | None = None, **kwargs: Any) -> TestResponse:
        return self.request("POST", path, user, **kwargs)

    def patch(self, path: str, user: User | None = None, **kwargs: Any) -> TestResponse:
        return self.request("PATCH", path, user, **kwargs)

    # --- what users do -------------------------------------------------------------------------

    def signup(self, organization: str | None = None) -> User:
        email = f"owner-{uuid.uuid4().hex[:12]}@example.com"
        response = self.post(
            "/auth/signup",
            json={
                "email": email,
                "password": PASSWORD,
                "full_name": "Owner",
                "organization_name": organization or f"Org {uuid.uuid4().hex[:6]}",
            },
        )
        assert response.status_code == 201, response.json
        body = _json(response)
        return User(
            body["user"]["id"],
            email,
            PASSWORD,
            body["organization"]["id"],
            body["access_token"],
            body["refresh_token"],
        )

    def add_user(self, admin: User, role: str = "MEMBER") -> User:
        email = f"{role.lower()}-{uuid.uuid4().hex[:12]}@example.com"
        response = self.post(
            "/organizations/users",
            admin,
            json={
                "email": email,
                "password": PASSWORD,
                "full_name": role.title(),
                "role": role,
            },
        )
        assert response.status_code == 201, response.json
        return self.login(email, PASSWORD, _json(response)["id"], admin.organization_id)

    def login(self, email: str, password: str, user_id: str, organization_id: str) -> User:
        response = self.post("/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.json
        return User(
            user_id, email, password, organization_id, _json(response)["access_token"], _json(response)["refresh_token"]
        )

    def create_wallet(self, user: User, type_: str = "PRIMARY", currency: str = "INR", name: str | None = None) -> str:
        body: dict[str, Any] = {"type": type_, "currency": currency}
        if name:
            body["name"] = name
        response = self.post("/wallets/", user, json=body)
        assert response.status_code == 201, response.json
        return str(_json(response)["id"])

    def wallet(self, user: User, wallet_id: str) -> dict[str, Any]:
        response = self.get(f"/wallets/{wallet_id}", user)
        assert response.status_code == 200, response.json
        return dict(_json(response))

    def deposit(self, user: User, wallet_id: str, amount: int) -> dict[str, Any]:
        response = self.post(f"/wallets/{wallet_id}/deposit", user, json={"amount": amount})
        assert response.status_code == 202, response.json
        return dict(_json(response))

    def transfer(
        self, user: User, source: str, destination: str, amount: int, *, currency: str = "INR", key: str | None = None
    ) -> TestResponse:
        headers = {"Idempotency-Key": key} if key else {}
        return self.post(
            "/transactions/transfer",
            user,
            headers=headers,
            json={
                "source_wallet_id": source,
                "destination_wallet_id": destination,
                "amount": amount,
                "currency": currency,
            },
        )

    def wait_final(self, user: User, transaction_id: str, seconds: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while True:
            response = self.get(f"/transactions/{transaction_id}?wait={min(5, seconds)}", user)
            assert response.status_code == 200, response.json
            if _json(response)["status"] in FINAL or time.monotonic() > deadline:
                return dict(_json(response))

    def funded_wallet(self, owner: User, amount: int, currency: str = "INR") -> str:
        wallet_id = self.create_wallet(owner, currency=currency)
        deposit = self.deposit(owner, wallet_id, amount)
        assert self.wait_final(owner, deposit["id"])["status"] == "COMPLETED"
        return wallet_id

    # --- bulk intake (appended) ----------------------------------------------------------------

    def transfer_batch(self, user: User, transfers: list[dict[str, Any]]) -> TestResponse:
        return self.post("/transactions/batch", user, json={"transfers": transfers})

    # --- peer to peer and settlement (appended) ------------------------------------------------

    def operator(self) -> User:
        """A platform operator, created the way `vaultcraft create-operator` does, then logged in."""
        from ledger.identity import create_operator
        from models.db import session_factory

        email = f"operator-{uuid.uuid4().hex[:12]}@example.com"
        with session_factory().begin() as session:
            user = create_operator(session, email=email, password=PASSWORD, full_name="Operator")
            user_id, organization_id = str(user.id), str(user.organization_id)
        return self.login(email, PASSWORD, user_id, organization_id)

    def p2p_request(
        self, payee: User, payer: User, destination: str, amount: int, *, currency: str = "INR"
    ) -> dict[str, Any]:
        response = self.post(
            "/p2p/requests",
            payee,
            json={
                "payer_email": payer.email,
                "amount": amount,
                "currency": currency,
                "destination_wallet_id": destination,
            },
        )
        assert response.status_code == 201, response.json
        return dict(_json(response))

    def p2p_settle(self, payer: User, request_id: str, source: str, key: str | None = None) -> TestResponse:
        headers = {"Idempotency-Key": key} if key else {}
        return self.post(
            f"/p2p/requests/{request_id}/settle", payer, headers=headers, json={"source_wallet_id": source}
        )

    def p2p_get(self, user: User, request_id: str) -> TestResponse:
        return self.get(f"/p2p/requests/{request_id}", user)

    def run_settlement(self, operator: User, cut_off: str | None = None) -> dict[str, Any]:
        response = self.post("/settlements/run", operator, json={"cut_off": cut_off} if cut_off else {})
        assert response.status_code in (200, 201), response.json
        return dict(_json(response))


def bulk_item(source: str, destination: str, amount: int, key: str | None = None, **extra: Any) -> dict[str, Any]:
    """One item of a POST /transactions/batch body, with a fresh idempotency key unless given one."""
    return {
        "source_wallet_id": source,
        "destination_wallet_id": destination,
        "amount": amount,
        "currency": "INR",
        "idempotency_key": key or uuid.uuid4().hex,
        **extra,
    }
