"""Scenario 8's parts (chaos/scenarios.py `webhook_outage`): webhooks through worker kills and a
Redis outage, to a receiver that fails a third of the time. Every event of the organisation reaches
every endpoint subscribed to it at least once, each signature verified by the `standardwebhooks`
library, none lost, none foreign."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from chaos import invariants
from chaos.invariants import Check
from chaos.load import Api
from chaos.receiver import Receipt, ReceiverProcess
from chaos.stack import Stack

POLL_SECONDS = 1.0

# Receiver path -> (the endpoint's filters, which event types it must receive). The expectations are
# written out here, not derived from the code under test.
ENDPOINTS: dict[str, tuple[list[str], Callable[[str], bool]]] = {
    "/flaky/all": (["*"], lambda event_type: True),
    "/flaky/completed": (["transaction.completed"], lambda event_type: event_type == "transaction.completed"),
    "/flaky/holds": (["hold.*"], lambda event_type: event_type.startswith("hold.")),  # no holds here: nothing
}


def create_endpoints(api: Api, receiver: ReceiverProcess) -> dict[str, str]:
    """Path -> endpoint id; the receiver learns each endpoint's secret."""
    ids, secrets = {}, {}
    for path, (filters, _) in ENDPOINTS.items():
        response = api._call("POST", "/webhooks/", json={"url": receiver.url + path, "event_types": filters})
        body = api._ok(response, 201)
        ids[path], secrets[path] = body["id"], body["secret"]
    receiver.register(secrets)
    return ids


def events_of(database_url: str, organization_id: str) -> list[tuple[str, str]]:
    """(event id, type) of every event for the organisation."""
    rows = invariants._rows(
        database_url,
        "SELECT event_id::text, event_type FROM outbox_events WHERE %(org)s::uuid = ANY(organization_ids)",
        org=organization_id,
    )
    return [(str(event_id), str(event_type)) for event_id, event_type in rows]


def wait_relayed(database_url: str, organization_id: str, timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        rows = invariants._rows(
            database_url,
            "SELECT count(*) FROM outbox_events WHERE %(org)s::uuid = ANY(organization_ids) AND published_at IS NULL",
            org=organization_id,
        )
        if rows[0][0] == 0:
            return True
        time.sleep(POLL_SECONDS)
    return False


def expected_pairs(events: list[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(path, event_id) for path, (_, wanted) in ENDPOINTS.items() for event_id, kind in events if wanted(kind)}


def first_success(receipts: list[Receipt]) -> dict[tuple[str, str], float]:
    first: dict[tuple[str, str], float] = {}
    for receipt in receipts:
        if receipt.status == 200:
            key = (receipt.path, receipt.event_id)
            first[key] = min(first.get(key, receipt.at), receipt.at)
    return first


def wait_received(receiver: ReceiverProcess, expected: set[tuple[str, str]], timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if expected <= set(first_success(receiver.receipts())):
            return True
        time.sleep(POLL_SECONDS)
    return False


def _failed_deliveries(database_url: str, endpoint_ids: list[str]) -> list[tuple[Any, ...]]:
    return invariants._rows(
        database_url,
        "SELECT id::text, error FROM webhook_deliveries WHERE endpoint_id = ANY(%(ids)s::uuid[]) AND status = 'FAILED'",
        ids=endpoint_ids,
    )


def timeline(
    before_seconds: float, outage_seconds: float, after_seconds: float, kills: int, rng: random.Random
) -> list[tuple[float, str]]:
    """(seconds into the load, action): kills alternating between the webhooks worker and a
    settlement worker, spread over the whole load, and Redis down for the outage in the middle."""
    slice_seconds = (before_seconds + outage_seconds + after_seconds) / max(kills, 1)
    moments = [slice_seconds * (i + rng.uniform(0.2, 0.8)) for i in range(kills)]
    actions = [(moment, "kill_webhooks" if i % 2 == 0 else "kill_worker") for i, moment in enumerate(moments)]
    actions += [(before_seconds, "redis_down"), (before_seconds + outage_seconds, "redis_up")]
    return sorted(actions)


def webhook_checks(
    stack: Stack,
    receipts: list[Receipt],
    cut_off: int,
    events: list[tuple[str, str]],
    expected: set[tuple[str, str]],
    endpoint_ids: list[str],
    relayed: bool,
) -> tuple[list[Check], dict[str, Any]]:
    successes = Counter((r.path, r.event_id) for r in receipts if r.status == 200)
    received = expected & set(successes)
    missing = sorted(expected - received)
    foreign = sorted(set(successes) - expected)
    unverified = [r for r in receipts if not r.verified]
    failed = _failed_deliveries(stack.database_url, endpoint_ids)
    figures = {
        "events": len(events),
        "expected": len(expected),
        "received": len(received),
        "duplicates": sum(count - 1 for count in successes.values()),
        "posts": len(receipts),
        "posts_cut_off": cut_off,
        "receiver_failed": sum(r.status != 200 for r in receipts),
        "receiver_hung": sum(r.held_seconds > 0 for r in receipts),
        "per_endpoint_expected": dict(Counter(path for path, _ in expected)),
    }
    checks = [
        Check("events_relayed", relayed, "every event of the organisation was published by the relay"),
        Check(
            "every_webhook_received",
            not missing,
            f"{len(received)}/{len(expected)} (endpoint, event) pairs answered 200 at least once"
            + (f"; missing e.g. {missing[:3]}" if missing else ""),
        ),
        Check(
            "webhook_signatures_verified",
            not unverified,
            f"all {len(receipts)} POSTs verified by standardwebhooks"
            if not unverified
            else f"{len(unverified)} POSTs failed verification",
        ),
        Check(
            "no_foreign_webhook",
            not foreign,
            "no endpoint received an event it is not subscribed to" if not foreign else f"unexpected: {foreign[:3]}",
        ),
        invariants._check("no_webhook_delivery_failed", failed, "no delivery ended FAILED"),
    ]
    return checks, figures
