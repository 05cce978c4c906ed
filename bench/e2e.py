"""End to end through the real web (granian) and Celery processes: single transfers and bulk batches."""

from __future__ import annotations

import json
import random
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from bench.dataset import BENCH_PASSWORD, Dataset
from bench.http_load import load
from bench.measure import database_now, settled, vacuum, wait_until_quiet

TRANSFER_PATH = "/api/v1/transactions/transfer"
BATCH_PATH = "/api/v1/transactions/batch"


def login(port: int, email: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/auth/login",
        data=json.dumps({"email": email, "password": BENCH_PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(json.loads(answer.read())["access_token"])


def _pair(rng: random.Random, data: Dataset, hot: bool) -> tuple[str, str]:
    while True:
        source = rng.choice(data.wallets)
        destination = data.hot_wallet if hot else rng.choice(data.wallets)
        if source != destination:
            return str(source), str(destination)


def _transfer(rng: random.Random, data: Dataset, hot: bool, tag: str) -> dict[str, Any]:
    source, destination = _pair(rng, data, hot)
    return {
        "source_wallet_id": source,
        "destination_wallet_id": destination,
        "amount": rng.randint(1, 100),
        "currency": "INR",
        "description": tag,
    }


def single_body(data: Dataset, hot: bool, tag: str) -> Callable[[], bytes]:
    rng = random.Random(tag)
    return lambda: json.dumps(_transfer(rng, data, hot, tag)).encode()


def batch_body(data: Dataset, hot: bool, tag: str, size: int) -> Callable[[], bytes]:
    rng = random.Random(tag)

    def make() -> bytes:
        items = [{**_transfer(rng, data, hot, tag), "idempotency_key": uuid.uuid4().hex} for _ in range(size)]
        return json.dumps({"transfers": items}).encode()

    return make


def phase(
    dsn: str,
    port: int,
    data: Dataset,
    path: str,
    make_body: Callable[[], bytes],
    tag: str,
    *,
    clients: int,
    seconds: float,
    rate_per_second: float | None,
    timeout_seconds: float,
    cpu_meter: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Load for `seconds`, wait for every intent to be final, and read the figures from the database.

    With a `cpu_meter` (CPU seconds used so far, by process group), also the CPU milliseconds each
    group spent per settled intent over the phase: where the machine's cores went."""
    vacuum(dsn)
    token = login(port, data.email)
    cpu_before = cpu_meter() if cpu_meter else {}
    started = database_now(dsn)
    result = load(port, token, path, make_body, clients=clients, seconds=seconds, rate_per_second=rate_per_second)
    finished = wait_until_quiet(dsn, timeout_seconds)
    figures = settled(dsn, tag, since=started)
    cpu_after = cpu_meter() if cpu_meter else {}
    intents = max(figures["intents"], 1)
    return {
        "clients": clients,
        "offered_per_second": rate_per_second,
        "http": result.as_dict(),
        "database": figures,
        "cpu_ms_per_intent": {
            name: 1000 * (cpu_after[name] - cpu_before.get(name, 0.0)) / intents for name in cpu_after
        },
        "finished": finished,
    }
