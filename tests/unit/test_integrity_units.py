"""Pure pieces of the integrity work: audit snapshots, JSON log lines, event envelopes."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime

from ledger.integrity.audit import _plain, _target
from models import OutboxEvent, TransactionStatus, Wallet
from ops.logging_setup import JsonFormatter, request_id_var


def test_audit_targets_are_named_by_table_and_id():
    wallet = Wallet(id=uuid.uuid4())
    assert _target(wallet) == ("wallet", str(wallet.id))
    assert _target(("user", 42)) == ("user", "42")
    assert _target(None) == (None, None)


def test_audit_snapshots_become_plain_json():
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    identifier = uuid.uuid4()
    snapshot = _plain({"status": TransactionStatus.CANCELLED, "at": moment, "ids": [identifier], "n": 1})
    assert snapshot == {"status": "CANCELLED", "at": moment.isoformat(), "ids": [str(identifier)], "n": 1}
    json.dumps(snapshot)


def test_log_lines_are_json_with_the_current_request_id():
    formatter = JsonFormatter("web")
    record = logging.makeLogRecord({"name": "x", "levelname": "CRITICAL", "msg": "drift on %s", "args": ("w1",)})
    record.wallet_id = uuid.UUID(int=1)
    token = request_id_var.set("req-123")
    try:
        line = json.loads(formatter.format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "drift on w1" and line["level"] == "CRITICAL" and line["service"] == "web"
    assert line["request_id"] == "req-123" and line["wallet_id"] == str(uuid.UUID(int=1))
    # An explicit request id on the record (a settled transaction's own) wins over the context's.
    record.request_id = "from-the-transaction"
    assert json.loads(formatter.format(record))["request_id"] == "from-the-transaction"


def test_the_event_envelope_carries_the_stable_id_and_the_recorded_data():
    from tasks.outbox import envelope

    event = OutboxEvent(
        id=7,
        event_id=uuid.uuid4(),
        event_type="transaction.completed",
        aggregate_type="transaction",
        aggregate_id="abc",
        wallet_ids=[uuid.UUID(int=2)],
        organization_ids=[uuid.UUID(int=3)],
        payload={"amount": 10},
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    body = envelope(event)
    assert body["id"] == str(event.event_id) and body["type"] == "transaction.completed"
    assert body["data"] == {"amount": 10} and body["wallet_ids"] == [str(uuid.UUID(int=2))]
    assert body["aggregate"] == {"type": "transaction", "id": "abc"}
