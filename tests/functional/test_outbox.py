"""Events: written with the change, relayed to the topic exchange `vaultcraft.events`, received as recorded."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from datetime import datetime

import pytest
from kombu import Connection, Queue
from sqlalchemy import select, text

RECEIVE_SECONDS_MAX = 30
CANCEL_ATTEMPTS_MAX = 5


@pytest.fixture
def events_queue(api):
    """A real queue on the broker, bound to every transaction event, deleted afterwards."""
    from tasks.outbox import EVENTS_EXCHANGE
    from workers.app import app

    connection = Connection(app.conf.broker_url)
    queue = Queue(f"test-events-{uuid.uuid4().hex[:8]}", EVENTS_EXCHANGE, routing_key="transaction.#")
    bound = queue(connection.default_channel)
    bound.declare()
    yield connection, bound
    bound.delete()
    connection.release()


def receive(connection, queue, wanted: set[str]) -> list:
    """Messages until every wanted event id has arrived (or the time bound passes)."""
    received, deadline = [], time.monotonic() + RECEIVE_SECONDS_MAX
    seen: set[str] = set()
    while not wanted <= seen and time.monotonic() < deadline:
        message = queue.get(no_ack=False)
        if message is None:
            time.sleep(0.05)
            continue
        message.ack()
        received.append(message)
        seen.add(message.payload["id"])
    return received


def recorded_events(transaction_ids: list[str]) -> list:
    from models import OutboxEvent
    from models.db import session_factory

    with session_factory().begin() as session:
        return list(
            session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.aggregate_id.in_(transaction_ids), OutboxEvent.aggregate_type == "transaction")
                .order_by(OutboxEvent.id)
            )
        )


def test_every_transaction_event_arrives_exactly_as_recorded(api, events_queue, unpublished):
    from tasks.outbox import envelope
    from tasks.settlement import enqueue_settlement

    connection, queue = events_queue
    unpublished.start()
    owner, payee = api.signup(), api.signup()
    # Deposits settle through the worker (the `unpublished` fixture holds back only what it names).
    source = api.create_wallet(owner)
    deposit = api.deposit(owner, source, 1_000)
    enqueue_settlement([deposit["id"]])
    assert api.wait_final(owner, deposit["id"])["status"] == "COMPLETED"
    destination = api.create_wallet(payee)
    # A busy worker may drain a held intent before the cancel reaches it; then it simply completed.
    cancelled: str | None = None
    early: list[str] = []
    while cancelled is None and len(early) < CANCEL_ATTEMPTS_MAX:
        candidate = api.transfer(owner, source, destination, 5).json["id"]
        if api.post(f"/transactions/{candidate}/cancel", owner).status_code == 200:
            cancelled = candidate
        else:
            early.append(candidate)
    assert cancelled is not None
    completed = [api.transfer(owner, source, destination, 100).json["id"] for _ in range(3)]
    failed = api.transfer(owner, source, destination, 10_000).json["id"]
    enqueue_settlement([*completed, failed])
    for transaction_id in [*completed, failed]:
        api.wait_final(owner, transaction_id)

    for transaction_id in early:
        assert api.wait_final(owner, transaction_id)["status"] == "COMPLETED"
    ids = [deposit["id"], *early, *completed, failed, cancelled]
    recorded = recorded_events(ids)
    # One event per final status; the batch's events in intent order (the cancel lands wherever it
    # committed relative to the batch, which may be drained by a busy worker before it is published).
    assert sorted((e.aggregate_id, e.event_type) for e in recorded) == sorted(
        [
            (deposit["id"], "transaction.completed"),
            *[(i, "transaction.completed") for i in early],
            (cancelled, "transaction.cancelled"),
            *[(i, "transaction.completed") for i in completed],
            (failed, "transaction.failed"),
        ]
    )
    settled_order = [e.aggregate_id for e in recorded if e.aggregate_id in (*completed, failed)]
    assert settled_order == [*completed, failed]
    messages = receive(connection, queue, {str(e.event_id) for e in recorded})
    mine = [m for m in messages if m.payload["data"]["id"] in ids]
    by_id = {m.payload["id"]: m for m in mine}
    assert len(mine) == len(by_id) == len(recorded)  # each once
    for event in recorded:
        message = by_id[str(event.event_id)]
        assert message.payload == envelope(event)
        assert message.delivery_info["routing_key"] == event.event_type
        assert message.properties["message_id"] == str(event.event_id)
        assert message.headers["event_type"] == event.event_type
    failed_event = by_id[str(next(e.event_id for e in recorded if e.aggregate_id == failed))].payload
    assert failed_event["data"]["failure_reason"] == "INSUFFICIENT_FUNDS"
    assert failed_event["data"]["amount"] == 10_000
    # Ordered per wallet: each wallet's events arrive in the order they were recorded.
    arrival = defaultdict(list)
    for message in mine:
        for wallet_id in message.payload["wallet_ids"]:
            arrival[wallet_id].append(message.payload["id"])
    for wallet_id, arrived in arrival.items():
        assert arrived == [str(e.event_id) for e in recorded if uuid.UUID(wallet_id) in e.wallet_ids]
    assert all(e.published_at is not None for e in recorded_events(ids))


def test_a_failed_publish_is_kept_and_retried_in_order(api):
    from ledger.integrity.events import record_event
    from models import OutboxEvent
    from models.db import session_factory
    from tasks.outbox import RELAY_LOCK_KEY, events_producer, relay_batch, relay_pending

    relay_pending()  # publish whatever is pending, so the events below are first in line
    with session_factory().begin() as session:
        # Hold the relay lock: the worker's relay stays out of this test's way until it rolls back.
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY})
        record_event(session, "test.first", aggregate=("test", "1"), data={"n": 1})
        record_event(session, "test.second", aggregate=("test", "2"), data={"n": 2})
        with events_producer("redis://127.0.0.1:1/0") as unreachable:
            published, more = relay_batch(session, unreachable)
        rows = list(
            session.scalars(select(OutboxEvent).where(OutboxEvent.aggregate_type == "test").order_by(OutboxEvent.id))
        )
        assert (published, more) == (0, False)
        first, second = rows[-2:]
        assert first.published_at is None and first.attempts == 1 and first.last_error
        assert first.next_attempt_at is not None
        # The event behind the failed one waits for it: order is never broken to make progress.
        assert second.attempts == 0 and second.published_at is None
        # Until its retry time, the relay publishes nothing, even with a working broker.
        with events_producer() as working:
            assert relay_batch(session, working) == (0, False)
            first.next_attempt_at = None
            published, _ = relay_batch(session, working)
        session.expire_all()  # read what the relay wrote (it updates rows, not the ORM objects loaded here)
        assert published >= 2 and first.published_at is not None and second.published_at is not None
        session.rollback()


def test_a_batch_reads_the_exchange_bindings_once_and_delivers_to_every_bound_queue(api, events_queue, monkeypatch):
    from kombu.transport.redis import Channel

    from ledger.integrity.events import record_event
    from models import OutboxEvent
    from models.db import session_factory
    from tasks.outbox import RELAY_LOCK_KEY, events_producer, relay_batch

    reads = []
    read_table = Channel.get_table

    def counted(self, exchange):
        reads.append(exchange)
        return read_table(self, exchange)

    monkeypatch.setattr(Channel, "get_table", counted)
    connection, queue = events_queue
    with session_factory().begin() as session:
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY})
        session.execute(text("UPDATE outbox_events SET published_at = now() WHERE published_at IS NULL"))
        for n in range(5):
            record_event(session, "transaction.test", aggregate=("test", str(n)), data={"n": n})
        with events_producer() as producer:
            assert relay_batch(session, producer) == (5, False)
            assert "get_table" not in vars(producer.channel)  # the transport's own lookup again
        ids = {
            str(e.event_id) for e in session.scalars(select(OutboxEvent).where(OutboxEvent.aggregate_type == "test"))
        }
        session.rollback()
    assert reads == ["vaultcraft.events"] * 2  # the first message, then once for the other four
    assert {m.payload["id"] for m in receive(connection, queue, ids)} == ids


def test_a_relay_that_stops_at_its_batch_bound_wakes_the_next_one(monkeypatch):
    import tasks.outbox

    monkeypatch.setattr(tasks.outbox, "_take_relay_lock", lambda session: True)
    monkeypatch.setattr(tasks.outbox, "relay_batch", lambda session, producer: (2, True))  # always more
    woken: list[dict[str, object]] = []

    class RecordingWake:
        def started(self) -> None: ...

        def request(self, task, **options) -> bool:
            woken.append(options)
            return True

    monkeypatch.setattr(tasks.outbox, "RELAY_WAKE", RecordingWake())

    assert tasks.outbox.relay_events.run() == 2 * tasks.outbox.RELAY_BATCHES_MAX
    assert woken == [{}]  # at once: the backlog goes on in the next task, without waiting for a commit


def test_several_events_in_one_insert_keep_their_order_and_fields(api, db):
    """`record_many` writes many events in one statement: in the order given (the relay's order),
    each with its own event id, its payload and its audience as given."""
    from ledger.integrity import events
    from models.db import session_factory

    aggregate = uuid.uuid4()
    wallets = sorted([uuid.uuid4(), uuid.uuid4()])
    when = "2026-01-02T03:04:05.600000+00:00"
    given = [
        events.Event(f"test.step_{n}", ("test", aggregate), {"n": n, "nested": {"k": [n]}}, wallets[: n % 2 + 1])
        for n in range(5)
    ]
    given.append(events.Event("test.last", ("test", aggregate), {"at": datetime.fromisoformat(when)}, (), [aggregate]))
    with session_factory().begin() as session:
        events.record_many(session, given)
    rows = db.rows(
        "SELECT event_id, event_type, payload, wallet_ids, organization_ids FROM outbox_events"
        " WHERE aggregate_id = :id ORDER BY id",
        id=str(aggregate),
    )
    assert [row.event_type for row in rows] == [e.type for e in given]
    assert len({row.event_id for row in rows}) == len(given)
    assert [row.payload for row in rows[:5]] == [{"n": n, "nested": {"k": [n]}} for n in range(5)]
    assert [row.wallet_ids for row in rows[:5]] == [wallets[: n % 2 + 1] for n in range(5)]
    assert (rows[5].payload, rows[5].wallet_ids, rows[5].organization_ids) == ({"at": when}, [], [aggregate])


def test_events_are_published_without_endpoints_and_get_deliveries_with_one(api):
    """With no endpoint enabled anywhere the relay does not read its batch again for deliveries, and
    the event is still published; once an organisation has an enabled endpoint, its events get a
    delivery in the relay's transaction, and another organisation's events still do not."""
    from ledger.identity import signup
    from ledger.integrity.events import record_event
    from models import EndpointStatus, OutboxEvent, WebhookDelivery, WebhookEndpoint
    from models.db import session_factory
    from tasks.outbox import RELAY_LOCK_KEY, events_producer, relay_batch

    with session_factory().begin() as session:
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY})
        session.execute(text("UPDATE outbox_events SET published_at = now() WHERE published_at IS NULL"))
        # Other tests' endpoints are disabled for the length of this transaction (rolled back).
        session.execute(text("UPDATE webhook_endpoints SET status = 'DISABLED' WHERE status = 'ENABLED'"))
        quiet, hooked = (
            signup(
                session,
                email=f"relay-{uuid.uuid4().hex[:8]}@example.com",
                password="relay-password-not-secret",
                full_name="Relay",
                organization_name=f"Relay {name}",
            )[1].id
            for name in ("quiet", "hooked")
        )

        def relayed(organization_id: uuid.UUID) -> tuple[OutboxEvent, int]:
            """One event of the organisation, relayed: the row, and the deliveries made for it."""
            aggregate = str(uuid.uuid4())
            record_event(
                session, "transaction.test", aggregate=("test", aggregate), data={}, organization_ids=[organization_id]
            )
            with events_producer() as producer:
                assert relay_batch(session, producer) == (1, False)
            session.expire_all()
            event = session.scalars(select(OutboxEvent).where(OutboxEvent.aggregate_id == aggregate)).one()
            made = session.scalars(select(WebhookDelivery).where(WebhookDelivery.event_id == event.event_id)).all()
            return event, len(made)

        event, deliveries = relayed(quiet)
        assert event.published_at is not None and deliveries == 0
        session.add(
            WebhookEndpoint(
                organization_id=hooked,
                url="https://example.com/h",
                event_types=["*"],
                status=EndpointStatus.ENABLED,
                secret_encrypted=b"x",
            )
        )
        session.flush()
        event, deliveries = relayed(hooked)
        assert event.published_at is not None and deliveries == 1
        event, deliveries = relayed(quiet)
        assert event.published_at is not None and deliveries == 0
        session.rollback()


def test_a_draining_worker_relays_between_its_batches(monkeypatch):
    """A backlog keeps the worker processes draining; the events of each large batch are relayed by the
    drain itself before it claims the next one, not left until every process is free again."""
    import tasks.outbox
    import tasks.settlement
    from ledger.settlement.posting import SettleOutcome

    size = tasks.settlement.get_settings().settle_batch_size_max
    script = [SettleOutcome(completed=size, failed=0, skipped=0), SettleOutcome(completed=3, failed=0, skipped=0)]
    script.append(SettleOutcome(completed=0, failed=0, skipped=0))  # the backlog is gone
    log: list[str] = []

    def settle(_settle):
        log.append("batch")
        return script.pop(0)

    monkeypatch.setattr(tasks.settlement, "_settle_with_retries", settle)

    def relay() -> int:
        log.append("relay")
        return 0

    monkeypatch.setattr(tasks.settlement, "relay_while_draining", relay)
    assert tasks.settlement.drain_backlog(10).settled == size + 3
    # After the large batch only: a few intents' events are left to the woken relay task.
    assert log == ["batch", "relay", "batch", "batch"]

    def broken(broker_url=None):
        raise RuntimeError("database gone")

    monkeypatch.setattr(tasks.outbox, "_relay", broken)
    assert tasks.outbox.relay_while_draining() == 0  # the drain goes on
