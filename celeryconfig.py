"""Celery settings and the beat schedule. Nothing else lives here."""

import os

from kombu import Exchange, Queue

broker_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
broker_connection_retry_on_startup = True
# A publish that cannot reach Redis fails within a second or two: the API answers, the sweep heals.
broker_connection_timeout = 2
broker_transport_options = {
    # An unacknowledged message comes back after this long (a worker that vanished without a trace).
    "visibility_timeout": 300,
    "socket_timeout": 5,
    "socket_connect_timeout": 2,
}

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
worker_prefetch_multiplier = 4
worker_max_tasks_per_child = 10_000
worker_send_task_events = True
task_send_sent_event = True

task_default_queue = "settlement"
task_queues = (Queue("settlement", Exchange("settlement"), routing_key="settlement"),)

imports = ("tasks.settlement",)

beat_schedule = {
    "sweep-stale-pending": {
        "task": "tasks.sweep_pending_transactions",
        "schedule": 10.0,
    },
}
