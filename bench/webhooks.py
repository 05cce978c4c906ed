"""Webhooks: deliveries per second to a receiver that answers at once, what they cost the settlement
engine, accepted -> received latency at half that load, and what one endpoint that always times out
costs the others.

The receiver (chaos/receiver.py) is a process of its own, verifying every signature as a real one
would; each phase's endpoints are retired after it, so the next phase's events reach only its own.

    throughput  `webhook_endpoints` endpoints subscribed to `transaction.completed`, then
                `webhook_intents` PENDING intents drained by the workers as in the engine phase:
                deliveries per second (first to last receipt), and the engine's settled rate over
                the same phase next to its rate alone
    half load   single transfers through the API at half the throughput's rate in deliveries:
                latency from the intent's acceptance (`transactions.created_at`) to the receipt
    one dead    the throughput phase again, with one more endpoint that answers only after the
                sender's timeout: the other endpoints' deliveries per second next to the first run's
"""

from __future__ import annotations

import json
import statistics
import urllib.request
from collections.abc import Callable
from typing import Any

import psycopg

from bench.dataset import Dataset
from bench.e2e import TRANSFER_PATH, login, phase, single_body
from bench.engine import insert_pending
from bench.measure import database_now, settled, vacuum, wait_until_quiet
from chaos.receiver import Receipt, ReceiverProcess

EVENT_TYPES = ["transaction.completed"]


class Endpoints:
    """The bench organisation's webhook endpoints, through the API."""

    def __init__(self, port: int, email: str, receiver: ReceiverProcess) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1/webhooks"
        self.token = login(port, email)
        self.receiver = receiver

    def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            payload = answer.read()
        return dict(json.loads(payload)) if payload else {}

    def create(self, paths: list[str]) -> list[str]:
        ids, secrets = [], {}
        for path in paths:
            created = self._call("POST", self.base + "/", {"url": self.receiver.url + path, "event_types": EVENT_TYPES})
            ids.append(str(created["id"]))
            secrets[path] = str(created["secret"])
        self.receiver.register(secrets)
        return ids

    def retire(self, ids: list[str]) -> None:
        """Subscribed from now on only to test events: the next phase's events pass them by. (Not
        deleted: that deletes their deliveries too, while the workers may still be finishing them.)"""
        for endpoint_id in ids:
            self._call("PATCH", f"{self.base}/{endpoint_id}", {"event_types": ["webhook.test"]})


def _ok_receipts(receipts: list[Receipt], paths: list[str]) -> list[Receipt]:
    wanted = set(paths)
    return [r for r in receipts if r.path in wanted and r.status == 200]


def _wait_delivered(receiver: ReceiverProcess, paths: list[str], expected: int, timeout_seconds: float) -> bool:
    """Until every path has had `expected` distinct events answered 200 (a delivery is at least once)."""
    import time

    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        got = {(r.path, r.event_id) for r in _ok_receipts(receiver.receipts(), paths)}
        if len(got) >= expected * len(paths):
            return True
        time.sleep(0.5)
    return False


def _completed_count(dsn: str, tag: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM transactions WHERE description = %s AND status = 'COMPLETED'", (tag,)
        ).fetchone()
    return int(row[0]) if row else 0


def _rate(receipts: list[Receipt]) -> float:
    """Deliveries per second from the first receipt to the last (first 200 per path and event)."""
    first: dict[tuple[str, str], float] = {}
    for r in receipts:
        first[(r.path, r.event_id)] = min(first.get((r.path, r.event_id), r.at), r.at)
    times = sorted(first.values())
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return len(times) / span if span > 0 else 0.0


def throughput(
    dsn: str,
    data: Dataset,
    receiver: ReceiverProcess,
    endpoints: Endpoints,
    *,
    intents: int,
    endpoint_count: int,
    dead: bool,
    timeout_seconds: float,
    cpu_meter: Callable[[], dict[str, float]],
) -> dict[str, Any]:
    label = "dead" if dead else "all"
    paths = [f"/ok/{label}{n}" for n in range(endpoint_count)]
    ids = endpoints.create(paths + (["/hang/dead"] if dead else []))
    try:
        tag = f"bench-webhooks-{label}"
        pending = insert_pending(dsn, data, intents, hot=False, tag=tag)
        vacuum(dsn)
        from settings import get_settings
        from tasks.settlement import enqueue_settlement

        cpu_before = cpu_meter()
        started = database_now(dsn)
        batch = get_settings().settle_batch_size_max
        for start in range(0, len(pending), batch):
            assert enqueue_settlement(pending[start : start + batch]), "the broker refused a publish"
        wait_until_quiet(dsn, timeout_seconds)
        engine = settled(dsn, tag, since=started)
        completed = _completed_count(dsn, tag)
        delivered_all = _wait_delivered(receiver, paths, completed, timeout_seconds)
        cpu_after = cpu_meter()
        receipts = _ok_receipts(receiver.receipts(), paths)
    finally:
        endpoints.retire(ids)
    deliveries = len({(r.path, r.event_id) for r in receipts})
    return {
        "endpoints": endpoint_count,
        "dead_endpoint": dead,
        "intents": len(pending),
        "completed": completed,
        "deliveries": deliveries,
        "deliveries_expected": completed * endpoint_count,
        "all_delivered": delivered_all,
        "duplicates": len(receipts) - deliveries,
        "deliveries_per_second": _rate(receipts),
        "engine_settled_per_second": engine["settled_per_second"],
        "cpu_seconds": {name: round(cpu_after[name] - cpu_before.get(name, 0.0), 1) for name in cpu_after},
    }


def latency(
    dsn: str,
    port: int,
    data: Dataset,
    receiver: ReceiverProcess,
    endpoints: Endpoints,
    *,
    transfers_per_second: float,
    endpoint_count: int,
    seconds: float,
    clients: int,
    timeout_seconds: float,
) -> dict[str, Any]:
    """Transfers through the API at a fixed rate; accepted -> received per (endpoint, event), ms."""
    paths = [f"/ok/half{n}" for n in range(endpoint_count)]
    ids = endpoints.create(paths)
    tag = "bench-webhooks-half"
    try:
        measured = phase(
            dsn, port, data, TRANSFER_PATH, single_body(data, False, tag), tag,
            clients=clients, seconds=seconds, rate_per_second=transfers_per_second, timeout_seconds=timeout_seconds,
        )  # fmt: skip
        completed = _completed_count(dsn, tag)
        _wait_delivered(receiver, paths, completed, timeout_seconds)
        receipts = _ok_receipts(receiver.receipts(), paths)
    finally:
        endpoints.retire(ids)
    accepted = _accepted_at(dsn, {r.event_id for r in receipts})
    first: dict[tuple[str, str], float] = {}
    for r in receipts:
        first[(r.path, r.event_id)] = min(first.get((r.path, r.event_id), r.at), r.at)
    samples = sorted(1000 * (at - accepted[event]) for (_, event), at in first.items() if event in accepted)
    return {
        "offered_transfers_per_second": transfers_per_second,
        "offered_deliveries_per_second": transfers_per_second * endpoint_count,
        "transfers": measured["database"]["intents"],
        "deliveries": len(first),
        "deliveries_expected": completed * endpoint_count,
        "latency_ms": _percentiles(samples),
    }


def _accepted_at(dsn: str, event_ids: set[str]) -> dict[str, float]:
    """Event id -> when its transaction was accepted (Unix seconds, the database's clock)."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT o.event_id::text, extract(epoch FROM t.created_at AT TIME ZONE 'UTC')"
            "  FROM outbox_events o JOIN transactions t ON t.id::text = o.aggregate_id"
            " WHERE o.event_id = ANY(%s::uuid[])",
            (sorted(event_ids),),
        ).fetchall()
    return {str(event_id): float(at) for event_id, at in rows}


def _percentiles(samples: list[float]) -> dict[str, float]:
    if len(samples) < 2:
        value = samples[0] if samples else 0.0
        return {"p50": value, "p95": value, "p99": value}
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98]}
