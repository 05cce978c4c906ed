"""Bulk transfer intake shapes: up to settings.bulk_transfers_max transfers, each with its own key."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, fields, utils, validate

from ledger.intents.bulk import BulkItem
from models.transaction import DESCRIPTION_LENGTH_MAX, IDEMPOTENCY_KEY_LENGTH_MAX
from settings import Settings
from web.schemas.common import ErrorBodySchema
from web.schemas.fields import AMOUNT_MINOR_MAX, DEFAULT_CURRENCY, bounded_string
from web.schemas.transactions import TransferSchema


class BulkTransferItemSchema(TransferSchema):
    idempotency_key = bounded_string(
        IDEMPOTENCY_KEY_LENGTH_MAX,
        required=True,
        metadata={"description": "Retry-safe key for this item, scoped to your organisation"},
    )


class ItemsValidatedAlone(fields.List):
    """Documented as a list of the item schema, but loaded as the raw list: the view validates each
    item on its own, so one invalid item is rejected in its own result slot instead of failing the
    whole request (and a well-formed item skips the per-field machinery, see `well_formed_item`)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        if not utils.is_collection(value):
            raise self.make_error("invalid")
        return list(value)


class BulkTransferSchema(Schema):
    transfers = ItemsValidatedAlone(
        fields.Nested(BulkTransferItemSchema),
        required=True,
        validate=validate.Length(min=1, max=Settings.bulk_transfers_max),
        metadata={"description": f"1 to {Settings.bulk_transfers_max} transfers, settled independently"},
    )


# The item fields the fast path knows. A field added to the schema is not among them, so an item that
# carries it goes through the schema (slower, never wrong) until it is added here; a test says so.
WELL_FORMED_FIELDS = frozenset(
    {"source_wallet_id", "destination_wallet_id", "amount", "currency", "description", "metadata", "idempotency_key"}
)
_REQUIRED_FIELDS = frozenset({"source_wallet_id", "destination_wallet_id", "amount", "idempotency_key"})
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CURRENCY = re.compile(r"[A-Z]{3}")


def _bounded(value: Any, length_max: int) -> bool:
    return type(value) is str and 0 < len(value) <= length_max and "\x00" not in value


def well_formed_item(raw: Any) -> BulkItem | None:
    """The item, when it is plainly valid; else None, and `BulkTransferItemSchema` loads it and says
    what is wrong. Loading a thousand items field by field through the schema costs more than the
    rest of the request, and almost every item is well formed.

    Accepts only what the schema accepts, to the same values (a test holds the two together); what
    is unusual (metadata, wallet ids not in canonical lowercase text, an explicit null) is left to
    the schema.
    """
    if type(raw) is not dict or not raw.keys() <= WELL_FORMED_FIELDS or not raw.keys() >= _REQUIRED_FIELDS:
        return None
    source, destination = raw["source_wallet_id"], raw["destination_wallet_id"]
    amount, key = raw["amount"], raw["idempotency_key"]
    currency = raw.get("currency", DEFAULT_CURRENCY)
    description = raw.get("description")
    well_formed = (
        type(source) is str
        and _CANONICAL_UUID.fullmatch(source) is not None
        and type(destination) is str
        and _CANONICAL_UUID.fullmatch(destination) is not None
        and type(amount) is int
        and 0 < amount <= AMOUNT_MINOR_MAX
        and type(currency) is str
        and _CURRENCY.fullmatch(currency) is not None
        and (description is None or _bounded(description, DESCRIPTION_LENGTH_MAX))
        and "metadata" not in raw
        and _bounded(key, IDEMPOTENCY_KEY_LENGTH_MAX)
    )
    return BulkItem(source, destination, amount, currency, description, None, key) if well_formed else None


def item_from_schema(loaded: dict[str, Any]) -> BulkItem:
    """The item `BulkTransferItemSchema` loaded, with its wallet ids as canonical text."""
    return BulkItem(
        str(loaded["source_wallet_id"]),
        str(loaded["destination_wallet_id"]),
        loaded["amount"],
        loaded["currency"],
        loaded["description"],
        loaded["metadata"],
        loaded["idempotency_key"],
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
