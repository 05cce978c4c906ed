"""Row ids are time-ordered (UUIDv7) wherever they are made, and the app's connections are set up
for short statements (models/ids.py, models/db.py)."""

from __future__ import annotations

import itertools
import time
import uuid

import pytest
from sqlalchemy import text

from models.db import session_factory
from models.ids import new_copy_id, new_id
from tests.client import bulk_item

RFC_VARIANT = uuid.RFC_4122


def _millis(value: uuid.UUID) -> int:
    return value.int >> 80


@pytest.mark.parametrize("make", [new_id, lambda: uuid.UUID(bytes=new_copy_id().bytes)])
def test_python_ids_are_version_7_and_follow_the_clock(make):
    before = int(time.time() * 1000)
    ids = [make() for _ in range(1_000)]
    after = int(time.time() * 1000)
    assert {(i.version, i.variant) for i in ids} == {(7, RFC_VARIANT)}
    assert all(before <= _millis(i) <= after for i in ids)
    assert len(set(ids)) == len(ids)
    # Ids of later milliseconds sort after earlier ones: that is what keeps index inserts at one edge.
    assert all(a < b for a, b in itertools.pairwise(ids) if _millis(a) < _millis(b))


def test_sql_ids_are_version_7_and_follow_the_server_clock():
    with session_factory().begin() as session:
        rows = session.execute(
            text(
                "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint, uuid_v7(),"
                " ceil(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
                " FROM generate_series(1, 1000)"
            )
        ).all()
    ids = [row[1] for row in rows]
    assert {(i.version, i.variant) for i in ids} == {(7, RFC_VARIANT)}
    # Between the server's clock read just before and just after it (a preempted backend can take
    # more than a millisecond between the two, so no fixed tolerance).
    assert all(before <= _millis(i) <= after for before, i, after in rows)
    assert len(set(ids)) == len(ids)


def test_intents_entries_events_and_audit_rows_get_time_ordered_ids(api, db):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    single = api.transfer(owner, source, destination, 100).json["id"]
    answer = api.transfer_batch(owner, [bulk_item(source, destination, 50)])
    bulk = answer.json["items"][0]["transaction"]["id"]
    intents = [single, bulk]
    for transaction_id in intents:
        assert api.wait_final(owner, transaction_id)["status"] == "COMPLETED"

    def column(sql: str) -> list[str]:
        return [str(row[0]) for row in db.rows(sql, ids=intents)]

    made = {
        "intents": intents,
        "wallets": [source, destination],
        "entries": column("SELECT id FROM ledger_entries WHERE transaction_id = ANY(CAST(:ids AS uuid[]))"),
        "events": column("SELECT event_id FROM outbox_events WHERE aggregate_id = ANY(:ids)"),
        "audit rows": column("SELECT id FROM audit_logs WHERE target_id = ANY(:ids)"),
    }
    assert all(len(ids) >= 2 for ids in made.values()), made
    versions = {name: {uuid.UUID(i).version for i in ids} for name, ids in made.items()}
    assert versions == {name: {7} for name in made}


def test_app_connections_plan_for_short_statements():
    with session_factory().begin() as session:
        settings = dict(
            session.execute(text("SELECT name, setting FROM pg_settings WHERE name IN ('jit', 'random_page_cost')"))
            .tuples()
            .all()
        )
    assert settings == {"jit": "off", "random_page_cost": "1.1"}
