"""Bounded HTTP load of holds through their whole life: each planned hold is placed (Idempotency-Key),
waited for until HELD, then captured whole, captured in part and voided, voided, captured in part and
left to expire, left to expire, or kept open. Careful clients, as in chaos.load: a request with no
clear answer is retried with the same key (a void, which has none, is simply repeated: voiding a
VOIDED hold answers it again)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import requests

from chaos.load import (
    BACKOFF_SECONDS_MAX,
    BACKOFF_SECONDS_MIN,
    RETRYABLE_STATUSES,
    Api,
    LoadResult,
    RetryPolicy,
    answer_of,
)

ACTIONS = ("capture_whole", "capture_part_then_void", "void", "capture_part_then_expire", "expire", "keep")
SHORT_EXPIRY_SECONDS = (2, 5)  # holds left to expire end this soon after they are HELD
LONG_EXPIRY_SECONDS = 3600
HELD_WAIT_SECONDS = 60.0  # how long a client waits for its hold to leave PENDING (workers are being killed)


@dataclass(frozen=True)
class PlannedHold:
    key: str
    source: str
    destination: str
    amount: int
    action: str

    @property
    def expires_in(self) -> int:
        return SHORT_EXPIRY_SECONDS[1] if self.action.endswith("expire") else LONG_EXPIRY_SECONDS


def plan_holds(rng: random.Random, wallets: list[str], count: int, amount_max: int) -> list[PlannedHold]:
    plan = []
    for index in range(count):
        source, destination = rng.sample(wallets, 2)
        action = ACTIONS[index % len(ACTIONS)]
        plan.append(PlannedHold(uuid.uuid4().hex, source, destination, rng.randint(2, amount_max), action))
    rng.shuffle(plan)
    return plan


def _post(
    session: requests.Session,
    api: Api,
    path: str,
    body: dict[str, Any],
    key: str | None,
    policy: RetryPolicy,
    result: LoadResult,
    rng: random.Random,
) -> dict[str, Any] | None:
    """POST until a clear answer; record an acknowledged keyed intent; the answer's body, or None."""
    headers = {"Authorization": f"Bearer {api.token}", **({"Idempotency-Key": key} if key else {})}
    label = path.rsplit("/", 1)[-1] if "/holds/" in path else "hold"
    for attempt in range(1, policy.attempts_max + 1):
        if attempt == 2 and key is not None:
            with result.lock:
                result.retried_keys += 1
        try:
            response = session.post(
                api.base_url + path,
                json=body,
                headers=headers,
                timeout=(policy.connect_timeout_seconds, policy.read_timeout_seconds),
            )
        except requests.Timeout:
            result.record(key or "", "timeout", None, False)
        except requests.ConnectionError:
            result.record(key or "", "connection-error", None, False)
        else:
            answer, intent_id = answer_of(response)
            if key is not None:
                result.record(key, answer, intent_id, answer == "202")
            else:
                with result.lock:
                    result.answers[f"{label}:{answer}"] += 1
            if intent_id is not None:
                return dict(response.json())
            if response.status_code not in RETRYABLE_STATUSES:
                return None
        time.sleep(min(BACKOFF_SECONDS_MIN * 2 ** (attempt - 1), BACKOFF_SECONDS_MAX) * rng.uniform(0.5, 1.0))
    if key is not None:
        with result.lock:
            result.gave_up.append(key)
    return None


def _until_held(session: requests.Session, api: Api, hold_id: str) -> str:
    deadline = time.monotonic() + HELD_WAIT_SECONDS
    status = "PENDING"
    while status == "PENDING" and time.monotonic() < deadline:
        try:
            response = session.get(
                f"{api.base_url}/holds/{hold_id}?wait=10",
                headers={"Authorization": f"Bearer {api.token}"},
                timeout=15,
            )
            if response.status_code == 200:
                status = str(response.json()["status"])
        except requests.RequestException:
            time.sleep(0.5)
    return status


def _life(
    session: requests.Session, api: Api, plan: PlannedHold, policy: RetryPolicy, result: LoadResult, rng: random.Random
) -> None:
    body = {
        "source_wallet_id": plan.source,
        "destination_wallet_id": plan.destination,
        "amount": plan.amount,
        "currency": "INR",
        "expires_in": plan.expires_in,
    }
    hold = _post(session, api, "/holds", body, plan.key, policy, result, rng)
    if hold is None or _until_held(session, api, hold["id"]) != "HELD":
        return
    capture_path, void_path = f"/holds/{hold['id']}/capture", f"/holds/{hold['id']}/void"
    if plan.action == "capture_whole":
        _post(session, api, capture_path, {}, f"{plan.key}-capture", policy, result, rng)
    elif plan.action.startswith("capture_part"):
        part = {"amount": plan.amount // 2}
        _post(session, api, capture_path, part, f"{plan.key}-capture", policy, result, rng)
        if plan.action.endswith("void"):
            _post(session, api, void_path, {}, None, policy, result, rng)
    elif plan.action == "void":
        _post(session, api, void_path, {}, None, policy, result, rng)


def run_hold_load(
    api: Api, plans: list[PlannedHold], *, clients: int, duration_seconds: float, policy: RetryPolicy, seed: int
) -> LoadResult:
    """Live every planned hold, the i-th started no earlier than start + i * duration / n."""
    result = LoadResult(attempted_keys=len(plans))
    start = time.monotonic()
    spacing = duration_seconds / max(len(plans), 1)
    indexes = iter(range(len(plans)))
    lock = threading.Lock()

    def client(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        with requests.Session() as session:
            while True:
                with lock:
                    index = next(indexes, None)
                if index is None:
                    return
                delay = start + index * spacing - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                _life(session, api, plans[index], policy, result, rng)

    threads = [threading.Thread(target=client, args=(n,), name=f"chaos-hold-client-{n}") for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result
