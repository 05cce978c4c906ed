"""Bounded HTTP load on the stack's API: a fixed list of transfers, paced over a fixed duration, from a
fixed number of client threads. Every transfer carries its own Idempotency-Key, and a client that gets
no clear answer (timeout, dropped connection, 5xx) tries again with the same key, as a careful client
does, a bounded number of times."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

SETUP_TIMEOUT_SECONDS = 30.0
WAIT_SECONDS = 10
# Answers a careful client retries (same key): nothing says the intent was not recorded.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_SECONDS_MIN, BACKOFF_SECONDS_MAX = 0.2, 2.0


@dataclass(frozen=True)
class Transfer:
    key: str
    source: str
    destination: str
    amount: int


@dataclass(frozen=True)
class RetryPolicy:
    attempts_max: int = 8
    # Read timeout of the first attempt and how it grows; the connect timeout is fixed.
    read_timeout_seconds: float = 10.0
    read_timeout_growth: float = 1.0
    read_timeout_seconds_max: float = 10.0
    connect_timeout_seconds: float = 2.0
    # Random extra read timeout of the first attempt (0..jitter): some answers arrive, some do not.
    read_timeout_jitter_seconds: float = 0.0


@dataclass
class LoadResult:
    """What the clients saw. `accepted` maps key → id for every key the API acknowledged (202, or 200
    for a replay); `answers` counts every attempt's outcome."""

    attempted_keys: int = 0
    accepted: dict[str, str] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)  # keys that got a 202 at least once
    answers: Counter[str] = field(default_factory=Counter)
    gave_up: list[str] = field(default_factory=list)
    conflicting_ids: list[str] = field(default_factory=list)  # keys answered with two different ids
    retried_keys: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, key: str, answer: str, transaction_id: str | None, created: bool) -> None:
        with self.lock:
            self.answers[answer] += 1
            if transaction_id is None:
                return
            known = self.accepted.setdefault(key, transaction_id)
            if known != transaction_id:
                self.conflicting_ids.append(key)
            if created:
                self.created.add(key)

    def summary(self) -> dict[str, Any]:
        return {
            "keys": self.attempted_keys,
            "accepted": len(self.accepted),
            "gave_up": len(self.gave_up),
            "retried_keys": self.retried_keys,
            "answers": dict(sorted(self.answers.items())),
        }


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.token = ""
        self.organization_id = ""

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return requests.request(method, self.base_url + path, headers=headers, timeout=SETUP_TIMEOUT_SECONDS, **kwargs)

    def _ok(self, response: requests.Response, *statuses: int) -> dict[str, Any]:
        if response.status_code not in statuses:
            raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text}")
        return dict(response.json())

    def signup(self, label: str) -> None:
        body = self._ok(
            self._call(
                "POST",
                "/auth/signup",
                json={
                    "email": f"chaos-{label}-{uuid.uuid4().hex[:10]}@example.com",
                    "password": "correct horse battery",
                    "full_name": "Chaos Owner",
                    "organization_name": f"Chaos {label}",
                },
            ),
            201,
        )
        self.token = body["access_token"]
        self.organization_id = body["organization"]["id"]

    def funded_wallets(self, count: int, amount: int) -> list[str]:
        wallets = [
            self._ok(self._call("POST", "/wallets/", json={"type": "PRIMARY", "currency": "INR"}), 201)["id"]
            for _ in range(count)
        ]
        deposits = [
            self._ok(self._call("POST", f"/wallets/{wallet}/deposit", json={"amount": amount}), 202)["id"]
            for wallet in wallets
        ]
        for deposit in deposits:
            status = self._ok(self._call("GET", f"/transactions/{deposit}?wait={WAIT_SECONDS}"), 200)["status"]
            if status != "COMPLETED":
                raise RuntimeError(f"set-up deposit {deposit} ended {status}")
        return wallets


def plan_transfers(rng: random.Random, wallets: list[str], count: int, amount_max: int) -> list[Transfer]:
    plan = []
    for _ in range(count):
        source, destination = rng.sample(wallets, 2)
        plan.append(Transfer(uuid.uuid4().hex, source, destination, rng.randint(1, amount_max)))
    return plan


def answer_of(response: requests.Response) -> tuple[str, str | None]:
    """('202', id) / ('200', id) for an acknowledgement, (status[:code], None) otherwise."""
    if response.status_code in (200, 202):
        return str(response.status_code), str(response.json()["id"])
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = ""
    return (f"{response.status_code}:{code}" if code else str(response.status_code)), None


def post_transfer(
    session: requests.Session,
    api: Api,
    transfer: Transfer,
    policy: RetryPolicy,
    result: LoadResult,
    rng: random.Random,
    on_accepted: Callable[[str], None] | None,
) -> None:
    """One key, retried until acknowledged or the attempts run out."""
    read_timeout = policy.read_timeout_seconds + rng.uniform(0, policy.read_timeout_jitter_seconds)
    body = {
        "source_wallet_id": transfer.source,
        "destination_wallet_id": transfer.destination,
        "amount": transfer.amount,
        "currency": "INR",
    }
    headers = {"Authorization": f"Bearer {api.token}", "Idempotency-Key": transfer.key}
    for attempt in range(1, policy.attempts_max + 1):
        if attempt == 2:
            with result.lock:
                result.retried_keys += 1
        try:
            response = session.post(
                api.base_url + "/transactions/transfer",
                json=body,
                headers=headers,
                timeout=(policy.connect_timeout_seconds, read_timeout),
            )
        except requests.Timeout:
            result.record(transfer.key, "timeout", None, False)
        except requests.ConnectionError:
            result.record(transfer.key, "connection-error", None, False)
        else:
            answer, transaction_id = answer_of(response)
            result.record(transfer.key, answer, transaction_id, answer == "202")
            if transaction_id is not None:
                if answer == "202" and on_accepted is not None:
                    on_accepted(transaction_id)
                return
            if response.status_code not in RETRYABLE_STATUSES:
                return  # a definite refusal (4xx): retrying the same request would not change it
        read_timeout = min(read_timeout * policy.read_timeout_growth, policy.read_timeout_seconds_max)
        time.sleep(min(BACKOFF_SECONDS_MIN * 2 ** (attempt - 1), BACKOFF_SECONDS_MAX) * rng.uniform(0.5, 1.0))
    with result.lock:
        result.gave_up.append(transfer.key)


def run_load(
    api: Api,
    transfers: list[Transfer],
    *,
    clients: int,
    duration_seconds: float,
    policy: RetryPolicy,
    seed: int,
    on_accepted: Callable[[str], None] | None = None,
) -> LoadResult:
    """Post every transfer, the i-th no earlier than start + i * duration / n; return when all are done."""
    result = LoadResult(attempted_keys=len(transfers))
    start = time.monotonic()
    spacing = duration_seconds / max(len(transfers), 1)
    next_index = iter(range(len(transfers)))
    index_lock = threading.Lock()

    def client(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        with requests.Session() as session:
            while True:
                with index_lock:
                    index = next(next_index, None)
                if index is None:
                    return
                delay = start + index * spacing - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                post_transfer(session, api, transfers[index], policy, result, rng, on_accepted)

    threads = [threading.Thread(target=client, args=(n,), name=f"chaos-client-{n}") for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result
