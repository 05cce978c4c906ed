"""Bulk transfer intake shapes: up to settings.bulk_transfers_max transfers, each with its own key."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from models.transaction import IDEMPOTENCY_KEY_LENGTH_MAX
from settings import Settings
from web.schemas.common import ErrorBodySchema
from web.schemas.fields import bounded_string
from web.schemas.transactions import TransferSchema


class BulkTransferItemSchema(TransferSchema):
    idempotency_key = bounded_string(
        IDEMPOTENCY_KEY_LENGTH_MAX,
        required=True,
        metadata={"description": "Retry-safe key for this item, scoped to your organisation"},
    )


class ItemValidatedAlone(fields.Nested):
    """Documented as the item schema, but loaded as-is: the view validates each item on its own, so
    one invalid item is rejected in its own result slot instead of failing the whole request."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, partial: Any = None, **kwargs: Any) -> Any:
        return value


class BulkTransferSchema(Schema):
    transfers = fields.List(
        ItemValidatedAlone(BulkTransferItemSchema),
        required=True,
        validate=validate.Length(min=1, max=Settings.bulk_transfers_max),
        metadata={"description": f"1 to {Settings.bulk_transfers_max} transfers, settled independently"},
    )


class BulkIntentSchema(Schema):
    id = fields.UUID()
    type = fields.String()
    status = fields.String()
    failure_reason = fields.String(allow_none=True)
    source_wallet_id = fields.UUID()
    destination_wallet_id = fields.UUID()
    amount = fields.Integer()
    currency = fields.String()
    idempotency_key = fields.String(allow_none=True)
    created_at = fields.DateTime()
    completed_at = fields.DateTime(allow_none=True)


class BulkItemResultSchema(Schema):
    index = fields.Integer(required=True, metadata={"description": "Position of the item in the request"})
    status_code = fields.Integer(
        required=True,
        metadata={"description": "202 accepted, 200 replay of an earlier request with this key, 4xx rejected"},
    )
    transaction = fields.Nested(BulkIntentSchema, allow_none=True)
    error = fields.Nested(ErrorBodySchema, allow_none=True)


class BulkResultSchema(Schema):
    accepted = fields.Integer(required=True, metadata={"description": "Items written as new PENDING intents"})
    replayed = fields.Integer(required=True, metadata={"description": "Items whose key named an earlier intent"})
    rejected = fields.Integer(required=True, metadata={"description": "Items refused, each with its own error"})
    items = fields.List(fields.Nested(BulkItemResultSchema), required=True)
