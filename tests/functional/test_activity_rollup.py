"""The activity rollup (ledger/analytics.py) against a scan of `transactions`: exact before and after
folds, through transfers (completed and failed, across organisations), bulk intake and deposits,
with the real worker settling and folding; percentiles within their bucket; tenancy."""

from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from ledger import analytics
from models.activity import LATENCY_BUCKETS
from models.db import get_engine, session_factory
from tests.client import bulk_item

COUNTED = set(analytics.COUNTED_TYPES)
Key = tuple[str, str, datetime]  # organisation, currency, hour


def _bucket(latency_us: int) -> int:
    ms = max(latency_us / 1000, 0.5)
    return min(LATENCY_BUCKETS - 1, max(0, math.floor(2 * math.log2(ms)) + 1))


def _zero() -> list[int]:
    return [0] * (4 + LATENCY_BUCKETS)


def scanned(org_ids: list[str]) -> dict[Key, list[int]]:
    """What a scan of `transactions` says, computed here in Python: per (organisation, currency,
    hour settled), [completed, failed, volume, latency sum µs, histogram…]."""
    with get_engine().connect() as connection:
        rows = connection.execute(
            text(
                "SELECT organization_id::text, currency, type, status, amount, created_at, completed_at"
                " FROM transactions WHERE organization_id = ANY(CAST(:orgs AS uuid[]))"
                " AND status IN ('COMPLETED', 'FAILED')"
            ),
            {"orgs": org_ids},
        ).all()
    found: dict[Key, list[int]] = defaultdict(_zero)
    for org, currency, type_, status, amount, created_at, completed_at in rows:
        if type_ not in COUNTED:
            continue
        hour = completed_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        counters = found[(org, currency, hour)]
        if status == "FAILED":
            counters[1] += 1
            continue
        latency_us = max(0, (completed_at - created_at) // timedelta(microseconds=1))
        counters[0] += 1
        counters[2] += amount
        counters[3] += latency_us
        counters[4 + _bucket(latency_us)] += 1
    return dict(found)


def stored(org_ids: list[str], granularity: str = "hour") -> dict[Key, list[int]]:
    """Rollup plus unfolded deltas, per (organisation, currency, bucket), read in one statement."""
    names = ["completed", "failed", "volume", "latency_sum_us", *(f"lat_{k:02d}" for k in range(LATENCY_BUCKETS))]
    columns, sums = ", ".join(names), ", ".join(f"sum({c})::bigint" for c in names)
    sql = f"""
        SELECT organization_id::text, currency, bucket, {sums}
          FROM (SELECT organization_id, currency, bucket_start AS bucket, {columns}
                  FROM activity_rollup WHERE granularity = :g
                 UNION ALL
                SELECT organization_id, currency, date_trunc(:g, hour, 'UTC'), {columns} FROM activity_deltas) AS b
         WHERE organization_id = ANY(CAST(:orgs AS uuid[]))
         GROUP BY 1, 2, 3
    """
    with get_engine().connect() as connection:
        rows = connection.execute(text(sql), {"g": granularity, "orgs": org_ids}).all()
    return {(r[0], r[1], r[2]): [int(v) for v in r[3:]] for r in rows}


def by_day(hourly: dict[Key, list[int]]) -> dict[Key, list[int]]:
    days: dict[Key, list[int]] = defaultdict(_zero)
    for (org, currency, hour), counters in hourly.items():
        day = days[(org, currency, hour.replace(hour=0))]
        for i, value in enumerate(counters):
            day[i] += value
    return dict(days)


def unfolded(org_ids: list[str]) -> int:
    with get_engine().connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM activity_deltas WHERE organization_id = ANY(CAST(:orgs AS uuid[]))"),
                {"orgs": org_ids},
            ).scalar_one()
        )


def fold() -> int | None:
    with session_factory().begin() as session:
        return analytics.fold_deltas(session)


def assert_exact(org_ids: list[str]) -> dict[Key, list[int]]:
    expected = scanned(org_ids)
    assert stored(org_ids) == expected
    assert stored(org_ids, "day") == by_day(expected)
    return expected


def settle_all(api, owner, ids: list[str]) -> list[dict[str, Any]]:
    return [api.wait_final(owner, i) for i in ids]


def test_rollup_and_deltas_equal_a_scan_before_and_after_folds(api):
    alice, bob = api.signup("Rollup A"), api.signup("Rollup B")
    orgs = [alice.organization_id, bob.organization_id]
    rich = api.funded_wallet(alice, 100_000)  # a deposit
    poor = api.funded_wallet(alice, 50)
    other = api.create_wallet(alice)
    bobs = api.funded_wallet(bob, 7_000)
    usd = api.funded_wallet(alice, 900, currency="USD")

    ids = []
    for amount in (100, 250, 1_000):
        ids.append(api.transfer(alice, rich, other, amount).json["id"])
    ids.append(api.transfer(alice, poor, other, 51).json["id"])  # fails: INSUFFICIENT_FUNDS
    ids.append(api.transfer(alice, rich, bobs, 333).json["id"])  # across organisations
    finals = settle_all(api, alice, ids)
    assert [f["status"] for f in finals] == ["COMPLETED"] * 3 + ["FAILED", "COMPLETED"]
    expected = assert_exact(orgs)

    # The cross-organisation transfer counts for its source's organisation, never the destination's.
    alice_inr = sum(v[2] for (o, c, _), v in expected.items() if o == alice.organization_id and c == "INR")
    bob_inr = sum(v[2] for (o, c, _), v in expected.items() if o == bob.organization_id and c == "INR")
    assert alice_inr == 100_000 + 50 + 100 + 250 + 1_000 + 333
    assert bob_inr == 7_000

    assert fold() is not None
    assert unfolded(orgs) == 0
    assert_exact(orgs)
    assert fold() == 0 or unfolded(orgs) == 0  # nothing of ours left to fold: it adds nothing twice
    assert_exact(orgs)

    # More after the fold: bulk intake (some fail), a deposit, a USD transfer; rollup + deltas exact.
    items = [bulk_item(rich, other, 10 + i) for i in range(20)] + [bulk_item(poor, other, 10_000)]
    body = api.transfer_batch(alice, items).json
    bulk_ids = [r["transaction"]["id"] for r in body["items"]]
    deposit = api.deposit(bob, bobs, 4_242)["id"]
    usd_out = api.transfer(alice, usd, api.create_wallet(alice, currency="USD"), 400, currency="USD").json["id"]
    settle_all(api, alice, [*bulk_ids, usd_out])
    settle_all(api, bob, [deposit])
    assert unfolded(orgs) > 0
    expected = assert_exact(orgs)
    assert sum(v[1] for v in expected.values()) == 2  # the two failures

    # Beat's task, on the real worker: folds ours away, and the totals do not move.
    from tasks.analytics import fold_activity

    fold_activity.delay()
    deadline = time.monotonic() + 30
    while unfolded(orgs) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert unfolded(orgs) == 0
    assert_exact(orgs)

    # What the console reads says the same.
    since, until = datetime.now(UTC) - timedelta(days=2), datetime.now(UTC) + timedelta(hours=1)
    with session_factory()() as session:
        series = analytics.activity_series(
            session, organization_id=uuid.UUID(alice.organization_id), since=since, until=until
        )
        everyone = analytics.activity_series(session, organization_id=None, since=since, until=until)
        totals = analytics.activity_by_organization(session, since=since, until=until)
    mine = {(p.bucket_start, p.currency): (p.completed, p.failed, p.volume) for p in series}
    want = {(h, c): tuple(v[:3]) for (o, c, h), v in expected.items() if o == alice.organization_id}
    assert mine == want
    # Tenancy: one organisation's series holds only its own; every organisation's holds at least both.
    assert sum(p.volume for p in series) == sum(v[2] for (o, _, _), v in expected.items() if o == orgs[0])
    assert sum(p.volume for p in everyone) >= sum(v[2] for v in expected.values())
    ours = {(str(t.organization_id), t.currency): (t.completed, t.failed, t.volume) for t in totals}
    for org in orgs:
        for currency in {c for (o, c, _) in expected if o == org}:
            rows = [v for (o, c, _), v in expected.items() if (o, c) == (org, currency)]
            assert ours[(org, currency)] == tuple(sum(r[i] for r in rows) for i in range(3))


def test_a_fold_rolled_back_leaves_everything_as_it_was_and_a_second_fold_waits_its_turn(api):
    owner = api.signup("Rollup crash")
    orgs = [owner.organization_id]
    api.funded_wallet(owner, 1_234)
    before = assert_exact(orgs)
    assert unfolded(orgs) > 0

    session = session_factory()()
    try:
        assert session.execute(text("SELECT 1")).scalar_one() == 1
        assert analytics.fold_deltas(session) is not None
        assert fold() is None  # the first one holds the lock: this one leaves it the work
    finally:
        session.rollback()  # a crash mid-fold: the deleted deltas come back, nothing was added
        session.close()
    assert unfolded(orgs) > 0
    assert assert_exact(orgs) == before
    fold()
    assert unfolded(orgs) == 0
    assert assert_exact(orgs) == before


def test_percentiles_are_within_their_bucket_of_the_scan(api):
    owner = api.signup("Rollup latency")
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    ids = [api.transfer(owner, source, destination, 1 + i).json["id"] for i in range(15)]
    settle_all(api, owner, ids)
    with get_engine().connect() as connection:
        latencies = sorted(
            (c - a) / timedelta(milliseconds=1)
            for a, c in connection.execute(
                text(
                    "SELECT created_at, completed_at FROM transactions"
                    " WHERE organization_id = :o AND status = 'COMPLETED'"
                ),
                {"o": owner.organization_id},
            ).all()
        )
    since = datetime.now(UTC) - timedelta(days=1)
    with session_factory()() as session:
        points = analytics.activity_series(
            session,
            organization_id=uuid.UUID(owner.organization_id),
            since=since,
            until=datetime.now(UTC) + timedelta(days=1),
            granularity="day",
        )
    assert sum(p.completed for p in points) == len(latencies) == 16
    if len(points) == 1:  # not across midnight: the day's percentiles are the whole set's
        for q, estimate in ((0.5, points[0].latency_p50_ms), (0.95, points[0].latency_p95_ms)):
            true = latencies[max(1, math.ceil(q * len(latencies))) - 1]
            lower, upper = analytics.bucket_bounds_ms(_bucket(round(true * 1000)))
            assert estimate is not None and lower <= estimate <= upper, (q, true, estimate)


def test_transfers_failed_in_review_count_as_failed(api, db):
    """A rejection and an expiry are the other two places an intent becomes FAILED."""
    from tasks.review import sweep_expired_reviews
    from tests.functional.test_review import in_review, review, settled

    owner = api.signup("Rollup review")
    orgs = [owner.organization_id]
    source, destination, rejected = in_review(api, owner)
    _, _, expiring = in_review(api, owner)
    approver = api.add_user(owner, "ADMIN")
    assert review(api, approver, rejected["id"], "REJECT").status_code == 200
    db.execute(
        "UPDATE transactions SET review_started_at = now() - interval '73 hours' WHERE id = :id", id=expiring["id"]
    )
    assert sweep_expired_reviews() >= 1
    assert settled(api, owner, source, destination, 10)["status"] == "COMPLETED"
    expected = assert_exact(orgs)
    assert sum(v[1] for v in expected.values()) == 2
    fold()
    assert assert_exact(orgs) == expected
