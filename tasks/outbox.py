"""The outbox relay: publishes committed events to the topic exchange `vaultcraft.events`.

    routing key  = event type (`transaction.completed`, `reconciliation.drift_found`, ...)
    message id   = the event's stable id; the body's `id` is the same, so consumers drop duplicates
    order        = `outbox_events.id`; one relay at a time (advisory lock), and a failed event blocks
                   the ones behind it until it goes out, so no consumer sees a wallet's events reordered

Delivery is at least once: an event is marked published only after the broker accepted it (on
RabbitMQ, confirmed it: tasks/confirms.py), so a crash between the two publishes it again. Failures
are retried with a growing delay, for ever.

The relay runs soon after a unit of work that wrote events commits (an after-commit hook wakes it,
debounced), between the large batches of a settle drain (`relay_while_draining`: during a backlog the
woken task would wait for every drain to end), and on a short beat schedule as a safety net for a
hook that could not reach the broker. Wherever it runs, it takes the same lock and does the same work.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from itertools import takewhile
from typing import Any, NamedTuple

from kombu import Connection, Exchange, Producer
from sqlalchemy import Row, Text, cast, event, func, literal_column, select, text, update
from sqlalchemy.orm import Session

from ledger.integrity.events import OUTBOX_WRITTEN_KEY, iso_sql
from models import OutboxEvent
from models.advisory_locks import AdvisoryLock
from models.db import session_factory
from notify import deliveries
from ops.metrics import EVENTS_PUBLISH_FAILURES, EVENTS_PUBLISHED
from settings import broker_namespace, get_settings, is_amqp
from tasks.confirms import Confirms, confirming_channel
from tasks.wake import Wake
from tasks.webhooks import enqueue_noted
from workers.app import app

logger = logging.getLogger(__name__)

EVENTS_EXCHANGE = Exchange(f"{broker_namespace()}vaultcraft.events", type="topic", durable=True)
RELAY_LOCK_KEY = int(AdvisoryLock.OUTBOX_RELAY)
# Bounds: events per transaction, transactions per task run, the retry delay, the error text kept.
RELAY_BATCH_SIZE_MAX = 500
RELAY_BATCHES_MAX = 20
RETRY_DELAY_SECONDS_MAX = 300
LAST_ERROR_LENGTH_MAX = 2000
# Broker commands buffered before the publish batch sends them (one LPUSH per bound queue per event).
PUBLISH_PIPELINE_COMMANDS_MAX = 2000
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


# The message body consumers receive, built by Postgres from the row: `envelope(row)` as JSON text.
# Building it in Python (the dictionary, the uuids as text, the JSON encoding) was a third of the
# relay's CPU per event (issue 3 profile); a test holds the two equal. `json_build_object`, not
# `jsonb_build_object`: it writes the text as it goes (the payload is already jsonb), where the
# jsonb form built a jsonb value of the whole envelope, sorting its keys, only to print it: half of the
# relay's SELECT (10,000 events: 245 -> 135 ms). Keys in the order written, and " : " between key and value.
_ENVELOPE_SQL = f"""json_build_object(
    'id', event_id::text, 'type', event_type, 'created_at', {iso_sql("created_at")},
    'aggregate', json_build_object('type', aggregate_type, 'id', aggregate_id),
    'wallet_ids', to_jsonb(wallet_ids), 'organization_ids', to_jsonb(organization_ids), 'data', payload
)::text"""
# What the relay reads of an event: plain rows, not ORM objects (building those was the largest part
# of the relay's CPU per event, issue 3 profile).
_RELAYED_COLUMNS: tuple[Any, ...] = (
    OutboxEvent.id,
    cast(OutboxEvent.event_id, Text).label("message_id"),
    OutboxEvent.event_type,
    literal_column(_ENVELOPE_SQL).label("body"),
    OutboxEvent.attempts,
    OutboxEvent.next_attempt_at,
)


def envelope(row: OutboxEvent) -> dict[str, Any]:
    """The message body consumers receive: the event exactly as recorded (the relay has Postgres
    build it as JSON, `_ENVELOPE_SQL`)."""
    return {
        "id": str(row.event_id),
        "type": row.event_type,
        "created_at": row.created_at.isoformat(),
        "aggregate": {"type": row.aggregate_type, "id": row.aggregate_id},
        "wallet_ids": [str(w) for w in row.wallet_ids],
        "organization_ids": [str(o) for o in row.organization_ids],
        "data": row.payload,
    }


def publish(producer: Producer, row: Row[Any], *, connect: bool = True) -> None:
    """One event (a row of _RELAYED_COLUMNS) to the exchange, its body already JSON. With `connect`,
    the exchange is declared first and a lost connection is retried (PUBLISH_RETRY_POLICY). A batch's
    later messages go without: they join the pipeline the first one opened, and a failure fails the
    whole batch anyway. Declaring and wrapping each message in kombu's retry machinery cost 10-15% of
    the relay's CPU per event (0.22 -> 0.19 ms in batches of 35 events, 0.13 -> 0.11 ms in batches of 500)."""
    producer.publish(
        row.body,
        exchange=EVENTS_EXCHANGE,
        routing_key=row.event_type,
        declare=[EVENTS_EXCHANGE] if connect else None,
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=2,
        message_id=row.message_id,
        headers={"event_id": row.message_id, "event_type": row.event_type},
        retry=connect,
        retry_policy=PUBLISH_RETRY_POLICY if connect else None,
    )


def _retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(2 ** min(attempts, 16), RETRY_DELAY_SECONDS_MAX))


def relay_batch(session: Session, producer: Producer) -> tuple[int, bool]:
    """Publish the oldest unpublished events in order. (published, more_may_remain).

    Stops at the first event that waits for its retry time: those behind it wait too. The batch's
    messages reach the broker together, in one pipelined round trip (kombu's publish batch), not one
    round trip each; if that fails, none is marked published (some may have arrived: at least once)
    and the first one is retried later, holding back the others.
    """
    rows = session.execute(
        select(*_RELAYED_COLUMNS)
        .where(OutboxEvent.published_at.is_(None))
        .order_by(OutboxEvent.id)
        .limit(RELAY_BATCH_SIZE_MAX)
    ).all()
    now: datetime = session.execute(select(func.clock_timestamp())).scalar_one()
    due = list(takewhile(lambda row: row.next_attempt_at is None or row.next_attempt_at <= now, rows))
    if not due:
        return 0, False
    try:
        if isinstance(producer, ConfirmingProducer):
            _publish_confirmed(producer, due)
        else:
            _publish_pipelined(producer, due)
    except Exception as error:  # any broker failure: keep the events, count, back off
        _hold_back(session, due[0], error, now)
        return 0, False
    _mark_published(session, due)
    # Webhook deliveries for the same events, in the same transaction: an event is marked published
    # only together with its deliveries, so none is lost between the broker and the endpoints.
    deliveries.create_for_events(session, [row.id for row in due], _ENVELOPE_SQL, get_settings())
    return len(due), len(due) == RELAY_BATCH_SIZE_MAX


def _publish_pipelined(producer: Producer, rows: list[Row[Any]]) -> None:
    """Redis: the rows in one pipelined round trip."""
    with producer.batch(max_size=PUBLISH_PIPELINE_COMMANDS_MAX):
        publish(producer, rows[0])  # connects, under the publish retry policy
        with bindings_read_once(producer.channel):
            for row in rows[1:]:
                publish(producer, row, connect=False)


class ConfirmingProducer(Producer):
    """A producer on a RabbitMQ channel in confirm mode, with the channel's `confirms`."""

    confirms: Confirms


def _publish_confirmed(producer: ConfirmingProducer, rows: list[Row[Any]]) -> None:
    """RabbitMQ: every row sent, then one wait until the broker confirmed them all (raises if it
    refused one or did not answer)."""
    EVENTS_EXCHANGE(producer.channel).declare()
    for row in rows:
        publish(producer, row, connect=False)
        producer.confirms.sent()
    producer.confirms.wait()


@contextmanager
def bindings_read_once(channel: Any) -> Iterator[None]:
    """Within the block, the channel reads each exchange's bindings once, not once per message.

    kombu's Redis transport looks up a topic exchange's queues (an SMEMBERS, on a client it builds
    for the purpose) before every message: most of a relay's CPU per event. The bindings are read
    when the block's first message is routed; a queue bound while the block runs (a few tens of
    milliseconds) receives the events from the next batch on, as if it had bound a moment later.
    """
    read_table = channel.get_table
    tables: dict[str, Any] = {}

    def table_read_once(exchange: str) -> Any:
        if exchange not in tables:
            tables[exchange] = read_table(exchange)
        return tables[exchange]

    channel.get_table = table_read_once
    try:
        yield
    finally:
        del channel.get_table  # the transport's own method again


def _hold_back(session: Session, row: Row[Any], error: Exception, now: datetime) -> None:
    attempts = row.attempts + 1
    session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id == row.id)
        .values(
            attempts=attempts,
            last_error=f"{type(error).__name__}: {error}"[:LAST_ERROR_LENGTH_MAX],
            next_attempt_at=now + _retry_delay(attempts),
        )
        .execution_options(synchronize_session="fetch")
    )
    EVENTS_PUBLISH_FAILURES.inc()
    logger.warning("event publish failed; will retry", extra={"event_id": row.message_id}, exc_info=True)


# The ids as one array parameter: an IN list of 500 is 500 placeholders for SQLAlchemy to render
# and the driver to bind, and no ORM object of an event is ever loaded, so there is nothing to sync.
_MARK_PUBLISHED = text(
    "UPDATE outbox_events SET published_at = clock_timestamp() WHERE id = ANY(CAST(:ids AS bigint[]))"
)


def _mark_published(session: Session, rows: list[Row[Any]]) -> None:
    """One UPDATE for the batch's published events (not a round trip per event): they commit
    together anyway, and a crash before the commit publishes them all again (at least once)."""
    if rows:
        session.execute(_MARK_PUBLISHED, {"ids": [row.id for row in rows]})


def _take_relay_lock(session: Session) -> bool:
    return bool(session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY}).scalar_one())


@contextmanager
def events_producer(broker_url: str | None = None) -> Iterator[Producer]:
    """A producer on the app's pooled broker connection, kept open between relay runs (a run per
    burst of commits would otherwise connect afresh each time); or on a new connection to `broker_url`.
    On RabbitMQ, a producer on a channel in confirm mode, on a connection kept the same way."""
    url = broker_url or str(app.conf.broker_url)
    if is_amqp(url):
        with confirming_channel(url) as (channel, confirms):
            producer = ConfirmingProducer(channel)
            producer.confirms = confirms
            yield producer
        return
    if broker_url is None:
        with app.producer_or_acquire() as producer:
            yield producer
        return
    with Connection(broker_url, connect_timeout=2) as connection:
        yield connection.Producer()


def relay_pending(broker_url: str | None = None) -> int:
    """Publish everything pending, in bounded batches, each in its own transaction. Returns the count
    published; 0 at once when another relay holds the lock (it will see the new rows)."""
    return _relay(broker_url).published


class RelayRun(NamedTuple):
    published: int
    busy: bool  # stopped at once: another relay holds the lock
    backlog_left: bool  # stopped at RELAY_BATCHES_MAX full batches: more is waiting


def _relay(broker_url: str | None = None) -> RelayRun:
    total = 0
    with events_producer(broker_url) as producer:
        for _ in range(RELAY_BATCHES_MAX):
            with session_factory().begin() as session:
                if not _take_relay_lock(session):
                    return RelayRun(total, busy=True, backlog_left=False)
                published, more = relay_batch(session, producer)
            enqueue_noted(session)
            total += published
            EVENTS_PUBLISHED.inc(published)
            if not more:
                return RelayRun(total, busy=False, backlog_left=False)
    return RelayRun(total, busy=False, backlog_left=True)


# A settle drain that has just settled at least this many intents relays their events itself, between
# its batches, when no other relay is running (`relay_while_draining`).
RELAY_WHILE_DRAINING_MIN = RELAY_BATCH_SIZE_MAX


def relay_while_draining() -> int:
    """Publish what is pending now, from a settle drain between two of its batches; 0 at once when
    another relay holds the lock. Never raises: the drain goes on, and the woken relay task and the
    beat schedule publish whatever this left.

    A backlog keeps every worker process draining for as long as it lasts (each drain task settles
    `settle_drain_batches_max` batches, then hands on to the next), so the relay task woken by the first
    commit waited behind all of it: in a 20,000-intent drain, not one event was published until the
    last intent had settled. Relaying here, under the same lock, in the same order, with the same
    batches and transactions as the task, publishes them while settling goes on: one drain relays
    while the other settles."""
    try:
        return _relay().published
    except Exception:
        logger.warning("relay between drain batches failed; the relay task will publish", exc_info=True)
        return 0


# Woken after commits that wrote events, debounced (tasks/wake.py): a busy system runs one relay per
# burst of commits, not one per settlement batch, each opening a broker connection of its own.
RELAY_WAKE = Wake(key="vaultcraft:outbox:wake", ttl_ms=2000)


# A woken relay starts this long after the commit that woke it, so the events of the commits in
# between go out in the same run: under API load, a run per 100 ms instead of one per settlement
# batch (each run takes the relay lock, reads, publishes and marks in a transaction of its own).
RELAY_GATHER_SECONDS = 0.1


# A relay that finds another one running asks again this much later: the running one may have read
# its batch before the commits that woke this one.
RELAY_BUSY_RETRY_SECONDS = 1


@app.task(name="tasks.relay_events", acks_late=True, ignore_result=True)
def relay_events() -> int:
    RELAY_WAKE.started()
    run = _relay()
    if run.backlog_left:
        RELAY_WAKE.request(relay_events)  # a long backlog continues in the next task, not in this one
    elif run.published == 0 and run.busy:
        RELAY_WAKE.request(relay_events, countdown=RELAY_BUSY_RETRY_SECONDS)
    return run.published


def wake_relay() -> None:
    """Ask a worker to relay soon; if neither Redis nor the broker takes it, the beat schedule will."""
    RELAY_WAKE.request(relay_events, countdown=RELAY_GATHER_SECONDS)


def _after_commit(session: Session) -> None:
    if session.info.pop(OUTBOX_WRITTEN_KEY, False):
        wake_relay()


def _after_soft_rollback(session: Session, previous_transaction: Any) -> None:
    if not previous_transaction.nested:
        session.info.pop(OUTBOX_WRITTEN_KEY, None)


_installed = False


def install_wake_hook() -> None:
    """Wake the relay after every commit that wrote events, in this process. Idempotent."""
    global _installed
    if not _installed:
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_soft_rollback", _after_soft_rollback)
        _installed = True


install_wake_hook()
