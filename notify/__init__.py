"""The product talking outward: signed webhooks.

    endpoints.py   an organisation's endpoints: validation, event-type filters, secrets and rotation
    signing_secrets.py  signing secrets, encrypted at rest (Fernet)
    signing.py     Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`)
    addresses.py   which addresses an endpoint may reach (SSRF rules), checked on create and on connect
    client.py      the one HTTP client per process: pooled connections, no redirects, 64 KB read, deadline
    deliveries.py  the delivery state machine: rows from the outbox, claim, outcome, backoff, disabling

The outbox (ledger/integrity/events.py) stays the one source of events: the relay (tasks/outbox.py)
writes a delivery row per matching endpoint in the transaction that marks the event published, and
thin Celery tasks (tasks/webhooks.py) make the attempts. Like ledger/, nothing here imports web/ or tasks/.
"""
