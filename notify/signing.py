"""Standard Webhooks headers for one attempt, signed with the `standardwebhooks` library itself."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from standardwebhooks import Webhook


def signed_headers(event_id: str, body: str, secrets: Sequence[str], at: datetime) -> dict[str, str]:
    """`webhook-id` (the event id: the same on every retry), `webhook-timestamp` (Unix seconds of
    this attempt) and `webhook-signature`: one `v1,<base64>` per secret, space-separated, so a
    receiver holding either secret verifies it during a rotation."""
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(Webhook(secret).sign(event_id, at, body) for secret in secrets),
    }
