"""Standard Webhooks headers for one attempt, signed with the `standardwebhooks` library itself."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from standardwebhooks import Webhook


class Signer:
    """The headers for any number of attempts under the same secrets (each `Webhook` decodes its
    secret once, not once per attempt)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._webhooks = [Webhook(secret) for secret in secrets]

    def headers(self, event_id: str, body: str, at: datetime) -> dict[str, str]:
        """`webhook-id` (the event id: the same on every retry), `webhook-timestamp` (Unix seconds of
        this attempt) and `webhook-signature`: one `v1,<base64>` per secret, space-separated, so a
        receiver holding either secret verifies it during a rotation."""
        return {
            "webhook-id": event_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": " ".join(webhook.sign(event_id, at, body) for webhook in self._webhooks),
        }


def signed_headers(event_id: str, body: str, secrets: Sequence[str], at: datetime) -> dict[str, str]:
    """One attempt's headers (see `Signer.headers`)."""
    return Signer(secrets).headers(event_id, body, at)
