"""Celery settings and the beat schedule. Nothing else lives here."""

import os

from celery.schedules import crontab
from kombu import Exchange, Queue

from settings import broker_namespace, broker_url_from, is_amqp

broker_url = broker_url_from(os.environ) or "redis://127.0.0.1:6379/0"
ON_RABBITMQ = is_amqp(broker_url)
# Empty unless stacks share one RabbitMQ virtual host (settings.broker_namespace).
NAMESPACE = broker_namespace()
broker_connection_retry_on_startup = True
# A publish that cannot reach the broker fails within a second or two: the API answers, the sweep heals.
broker_connection_timeout = 2
if ON_RABBITMQ:
    # RabbitMQ redelivers a message whose consumer's connection dropped: no visibility timeout to tune.
    broker_transport_options: dict[str, object] = {}
    # Celery's control and monitoring exchanges follow the namespace, so a `celery inspect` (and the
    # tests' worker ping) reaches only this stack's workers.
    control_exchange = f"{NAMESPACE}celery"
    event_exchange = f"{NAMESPACE}celeryev"
else:
    broker_transport_options = {
        # An unacknowledged message comes back after this long (a worker that vanished without a trace).
        "visibility_timeout": 300,
        "socket_timeout": 5,
        "socket_connect_timeout": 2,
    }
# Chaos runs force redelivery with a short visibility timeout, and sweep for abandoned messages every
# second so a redelivered message comes back within a few seconds instead of minutes.
if os.environ.get("VAULTCRAFT_VISIBILITY_TIMEOUT_SECONDS") and not ON_RABBITMQ:
    broker_transport_options.update(
        visibility_timeout=int(os.environ["VAULTCRAFT_VISIBILITY_TIMEOUT_SECONDS"]),
        unacked_restore_interval=1,
        unacked_restore_throttle=1,
    )

task_serializer = "json"
accept_content = ["json"]
task_ignore_result = True
result_backend = None
timezone = "UTC"
enable_utc = True

# Settlement is idempotent, so a message is acknowledged only after the task ran, and a worker
# killed mid-task puts its message back instead of losing it.
task_acks_late = True
task_reject_on_worker_lost = True
task_time_limit = 120
task_soft_time_limit = 90
# Few messages in flight per process: a killed worker strands little, and batches stay fair.
# Not higher (issue 3 bench): single intents share debounced drain messages and bulk intake sends
# one message per 1,000 intents, so there are few messages to prefetch, and a settle task drains the
# backlog behind its own ids anyway.
worker_prefetch_multiplier = 4
# Two prefork processes on two cores: one per core, each with its Postgres backend. With a hot wallet
# locked last (ledger/settlement/posting.py) batches seldom wait on each other, so settling is bound by CPU, and
# more processes only add switching and lock probes between them. Issue 3 bench, 50,000 PENDING
# intents, same machine and session, uniform / onto one hot wallet: 2 processes 8,800-9,600/s (2 runs)
# and 9,000-10,600/s (5 runs); 3 processes 8,400-8,600/s and 8,000-9,000/s (2 runs each); 4 processes
# 7,300-7,900/s and 7,700-8,700/s (3 runs each). End to end (single transfers, 32 clients) and bulk intake settled
# at the same rate with 2 as with 4. The outbox relay shares the two processes: a relay task waits for a
# free one, and during a backlog, when both drain for as long as it lasts, a drain relays between its
# large batches itself (tasks/outbox.py `relay_while_draining`).
worker_concurrency = 2  # `celery worker --concurrency N` overrides it
worker_max_tasks_per_child = 10_000
# Off until a monitor asks: Flower turns task events on in every worker when it starts, and again
# every few seconds (its enable_events option, on by default), so it still shows every task. Left on
# with nobody watching, the worker's main process published three events per task to the broker:
# about half of its CPU when the API's drains run (issue 3 profile, py-spy).
worker_send_task_events = False
# Off (issue 3 request profile): on, every publish (one per accepted intent) also publishes a
# task-sent event to the broker from the web process. Flower still sees every task through the
# worker's received/started/succeeded events.
task_send_sent_event = False

# Settle tasks have the `settlement` queue to themselves (issue 3 profile). The outbox relay (woken,
# debounced, after commits that write events), the sweep, reconciliation
# and settlement batches go to `maintenance`: a settle task never waits behind them in one FIFO, and
# the `settlement` depth counts only intents waiting. The Procfile worker consumes both queues.
SETTLEMENT_QUEUE = f"{NAMESPACE}settlement"
MAINTENANCE_QUEUE = f"{NAMESPACE}maintenance"
WEBHOOKS_QUEUE = f"{NAMESPACE}webhooks"
# On RabbitMQ both are quorum queues: replicated across the cluster's nodes (Raft), durable, and a
# message is confirmed to its publisher only once a majority holds it. They have no priorities and no
# global QoS; Celery (worker_detect_quorum_queues, on by default) then sets prefetch per consumer.
# The exchanges stay direct: Celery's native delayed delivery (topic exchanges, for ETAs of hours)
# works in whole seconds and refuses the sub-second countdowns of the debounced wakes, which the
# worker holds for their fraction of a second instead, as on Redis (workers/app.py).
_QUEUE_ARGUMENTS = {"x-queue-type": "quorum"} if ON_RABBITMQ else None
task_default_queue = SETTLEMENT_QUEUE
task_queues = (
    Queue(SETTLEMENT_QUEUE, Exchange(SETTLEMENT_QUEUE), routing_key=SETTLEMENT_QUEUE, queue_arguments=_QUEUE_ARGUMENTS),
    Queue(
        MAINTENANCE_QUEUE, Exchange(MAINTENANCE_QUEUE), routing_key=MAINTENANCE_QUEUE, queue_arguments=_QUEUE_ARGUMENTS
    ),
    # Webhook attempts wait on other people's servers (up to 10 s each): a worker of their own, with a
    # pool of threads (Procfile `webhooks`), so no endpoint ever holds up settlement.
    Queue(WEBHOOKS_QUEUE, Exchange(WEBHOOKS_QUEUE), routing_key=WEBHOOKS_QUEUE, queue_arguments=_QUEUE_ARGUMENTS),
)
task_routes = {
    name: {"queue": MAINTENANCE_QUEUE}
    for name in (
        "tasks.relay_events",
        "tasks.sweep_pending_transactions",
        "tasks.run_settlement_batch",
        "tasks.reconcile_incremental",
        "tasks.reconcile_full",
        "tasks.purge_idempotency_keys",
        "tasks.sweep_webhook_deliveries",
        "tasks.sweep_expired_holds",
        "tasks.fold_activity",
    )
}
task_routes["tasks.deliver_webhook"] = {"queue": WEBHOOKS_QUEUE}

imports = (
    "tasks.settlement",
    "tasks.settlement_batches",
    "tasks.outbox",
    "tasks.reconciliation",
    "tasks.idempotency",
    "tasks.webhooks",
    "tasks.holds",
    "tasks.review",
    "tasks.analytics",
)

beat_schedule = {
    # The activity deltas settling appends, folded into the console's rollup (ledger/analytics.py):
    # charts are exact without it, but read every delta not folded yet.
    "fold-activity": {
        "task": "tasks.fold_activity",
        "schedule": float(os.environ.get("VAULTCRAFT_ACTIVITY_FOLD_SECONDS", "10")),
    },
    # Holds past their expires_at whose ETA task (tasks.expire_holds) was lost or never scheduled.
    "sweep-expired-holds": {
        "task": "tasks.sweep_expired_holds",
        "schedule": 5.0,
    },
    # Transfers left IN_REVIEW past settings.review_window_seconds fail REVIEW_EXPIRED.
    "sweep-expired-reviews": {
        "task": "tasks.sweep_expired_reviews",
        "schedule": 60.0,
    },
    # Cross-organisation net settlement: one batch every few minutes (seconds; tunable for demos).
    "run-settlement-batch": {
        "task": "tasks.run_settlement_batch",
        "schedule": float(os.environ.get("VAULTCRAFT_SETTLEMENT_BATCH_SECONDS", "300")),
    },
    "sweep-stale-pending": {
        "task": "tasks.sweep_pending_transactions",
        "schedule": 10.0,
    },
    # The outbox relay is also woken after commits that write events; this catches what that missed.
    "relay-outbox-events": {
        "task": "tasks.relay_events",
        "schedule": 5.0,
    },
    # Reconciliation: incremental every few minutes (cost follows new activity), full every night.
    "reconcile-incremental": {
        "task": "tasks.reconcile_incremental",
        "schedule": float(os.environ.get("VAULTCRAFT_RECONCILE_SECONDS", "180")),
    },
    "reconcile-full-nightly": {
        "task": "tasks.reconcile_full",
        "schedule": crontab(hour=2, minute=30),
    },
    # Idempotency keys past their time to live (settings.idempotency_key_ttl_hours), in bounded batches.
    "purge-idempotency-keys": {
        "task": "tasks.purge_idempotency_keys",
        "schedule": 600.0,
    },
    # Webhook deliveries due for too long (a lost message, a killed worker, a broker outage).
    "sweep-webhook-deliveries": {
        "task": "tasks.sweep_webhook_deliveries",
        "schedule": 5.0,
    },
}
