"""Webhook endpoint and delivery shapes."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from models import DeliveryStatus, EndpointStatus
from models.webhook import (
    WEBHOOK_DESCRIPTION_LENGTH_MAX,
    WEBHOOK_EVENT_TYPE_LENGTH_MAX,
    WEBHOOK_EVENT_TYPES_MAX,
    WEBHOOK_URL_LENGTH_MAX,
)
from web.schemas.fields import bounded_string


def _event_types(**kwargs: object) -> fields.List:
    return fields.List(
        bounded_string(WEBHOOK_EVENT_TYPE_LENGTH_MAX),
        validate=validate.Length(min=1, max=WEBHOOK_EVENT_TYPES_MAX),
        metadata={
            "description": 'Event types to receive: "*" (all), "<aggregate>.*" such as "hold.*", or exact types',
            "example": ["transaction.completed", "hold.*"],
        },
        **kwargs,  # type: ignore[arg-type]
    )


def _url(**kwargs: object) -> fields.String:
    return bounded_string(
        WEBHOOK_URL_LENGTH_MAX,
        metadata={
            "description": "https URL; its host must resolve to public addresses only",
            "example": "https://example.com/hooks/vaultcraft",
        },
        **kwargs,  # type: ignore[arg-type]
    )


class WebhookCreateSchema(Schema):
    url = _url(required=True)
    event_types = _event_types(required=True)
    description = bounded_string(WEBHOOK_DESCRIPTION_LENGTH_MAX, length_min=0, load_default=None, allow_none=True)


class WebhookUpdateSchema(Schema):
    url = _url()
    event_types = _event_types()
    description = bounded_string(WEBHOOK_DESCRIPTION_LENGTH_MAX, length_min=0, allow_none=True)
    status = fields.String(validate=validate.OneOf([s.value for s in EndpointStatus]))


class WebhookSchema(Schema):
    id = fields.UUID()
    organization_id = fields.UUID()
    url = fields.String()
    event_types = fields.List(fields.String())
    description = fields.String(allow_none=True)
    status = fields.String(metadata={"example": EndpointStatus.ENABLED.value})
    failing_since = fields.DateTime(
        allow_none=True, metadata={"description": "since when every attempt has failed; null after a success"}
    )
    disabled_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class WebhookWithSecretSchema(WebhookSchema):
    secret = fields.String(
        metadata={"description": "The signing secret, shown only now", "example": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZI"}
    )


class WebhookSecretSchema(Schema):
    secret = fields.String(metadata={"description": "The new signing secret, shown only now"})
    previous_secret_expires_at = fields.DateTime(
        metadata={"description": "until then deliveries are signed with the previous secret too"}
    )


class WebhookDeliverySchema(Schema):
    id = fields.UUID()
    endpoint_id = fields.UUID()
    event_id = fields.UUID(metadata={"description": "the webhook-id header: the same on every attempt"})
    event_type = fields.String()
    attempt = fields.Integer(metadata={"description": "attempts made so far; the fields below are the last one's"})
    status = fields.String(metadata={"example": DeliveryStatus.SUCCEEDED.value})
    response_status = fields.Integer(allow_none=True)
    duration_ms = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True, metadata={"example": "HTTP 500"})
    created_at = fields.DateTime()
    last_attempt_at = fields.DateTime(allow_none=True)
    next_attempt_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)
