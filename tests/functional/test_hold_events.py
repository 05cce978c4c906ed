"""The engine's `hold.*` events are built in Postgres (ledger/settlement/hold_outcomes.py); a void's and an
expiry's in Python (`hold_data`). Both must carry the same payload for the same hold."""

from __future__ import annotations

import uuid
from typing import Any

from ledger.integrity import events
from ledger.settlement.hold_outcomes import hold_data
from models import Hold
from models.db import session_factory
from tests.client import ApiClient, User


def _hold(api: ApiClient, user: User, source: str, destination: str, amount: int, **extra: Any) -> dict[str, Any]:
    body = {"source_wallet_id": source, "destination_wallet_id": destination, "amount": amount, **extra}
    accepted = api.post("/holds", user, json=body)
    assert accepted.status_code == 202 and accepted.json, accepted.json
    final = api.get(f"/holds/{accepted.json['id']}?wait=10", user)
    assert final.status_code == 200, final.json
    return dict(final.json or {})


def _as_python_writes_it(hold_id: str, event_type: str, **extra: Any) -> dict[str, Any]:
    """The outbox row `record_hold_events` would write for this hold as it stands now."""
    with session_factory().begin() as session:
        hold = session.get(Hold, uuid.UUID(hold_id))
        assert hold is not None
        event = events.Event(
            event_type,
            ("hold", hold.id),
            {**hold_data(hold), **extra},
            (hold.source_wallet_id, hold.destination_wallet_id),
            (hold.organization_id,),
        )
        row = events.prepare([event, event])[0]  # several: as a batch prepares them, ids made in Postgres
    return {
        "payload": row["payload"],
        "wallet_ids": [str(w) for w in row["wallet_ids"]],
        "organization_ids": [str(o) for o in row["organization_ids"]],
    }


def _written(db: Any, hold_id: str, event_type: str) -> dict[str, Any]:
    rows = db.rows(
        "SELECT payload, CAST(wallet_ids AS text[]), CAST(organization_ids AS text[]) FROM outbox_events"
        " WHERE aggregate_type = 'hold' AND aggregate_id = :id AND event_type = :type",
        id=hold_id,
        type=event_type,
    )
    assert len(rows) == 1, rows
    payload, wallet_ids, organization_ids = rows[0]
    return {"payload": payload, "wallet_ids": list(wallet_ids), "organization_ids": list(organization_ids)}


def test_the_engines_hold_events_carry_what_python_builds(api, db):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    metadata = {"order": "A-17", "lines": [1, 2], "note": None}
    held = _hold(api, owner, source, destination, 2_000, description="card auth", metadata=metadata)
    assert held["status"] == "HELD"
    assert _written(db, held["id"], "hold.held") == _as_python_writes_it(held["id"], "hold.held")

    partial = api.post(f"/holds/{held['id']}/capture", owner, json={"amount": 500})
    assert partial.status_code == 202, partial.json
    assert api.wait_final(owner, partial.json["id"])["status"] == "COMPLETED"
    expected = _as_python_writes_it(held["id"], "hold.captured", capture_id=partial.json["id"])
    assert expected["payload"]["status"] == "HELD" and expected["payload"]["remaining_amount"] == 1_500
    assert _written(db, held["id"], "hold.captured") == expected

    # The last capture ends the hold: CAPTURED, ended, nothing remaining.
    last = api.post(f"/holds/{held['id']}/capture", owner, json={})
    assert api.wait_final(owner, last.json["id"])["status"] == "COMPLETED"
    rows = db.rows(
        "SELECT payload FROM outbox_events WHERE aggregate_type = 'hold' AND aggregate_id = :id"
        " AND event_type = 'hold.captured' ORDER BY id",
        id=held["id"],
    )
    ended = _as_python_writes_it(held["id"], "hold.captured", capture_id=last.json["id"])["payload"]
    assert ended["status"] == "CAPTURED" and ended["ended_at"] is not None and ended["remaining_amount"] == 0
    assert [row[0] for row in rows] == [expected["payload"], ended]

    failed = _hold(api, owner, source, destination, 100_000)
    assert failed["status"] == "FAILED"
    assert _written(db, failed["id"], "hold.failed") == _as_python_writes_it(failed["id"], "hold.failed")
