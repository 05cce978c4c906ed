"""Hold shapes (two-phase transfers)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from models import DESCRIPTION_LENGTH_MAX, HoldStatus
from models.hold import HOLD_EXPIRES_IN_SECONDS_DEFAULT, HOLD_EXPIRES_IN_SECONDS_MAX, HOLD_EXPIRES_IN_SECONDS_MIN
from web.schemas.common import PageArgsSchema
from web.schemas.fields import DEFAULT_CURRENCY, BoundedDict, MinorUnits, bounded_string, currency
from web.schemas.transactions import METADATA_BYTES_MAX


class HoldCreateSchema(Schema):
    source_wallet_id = fields.UUID(required=True)
    destination_wallet_id = fields.UUID(required=True)
    amount = MinorUnits(required=True)
    currency = currency(load_default=DEFAULT_CURRENCY)
    expires_in = fields.Integer(
        strict=True,
        load_default=HOLD_EXPIRES_IN_SECONDS_DEFAULT,
        validate=validate.Range(min=HOLD_EXPIRES_IN_SECONDS_MIN, max=HOLD_EXPIRES_IN_SECONDS_MAX),
        metadata={"description": "seconds from when the funds are held until the rest is released"},
    )
    description = bounded_string(DESCRIPTION_LENGTH_MAX, load_default=None)
    metadata = BoundedDict(METADATA_BYTES_MAX, load_default=None)


class CaptureSchema(Schema):
    amount = MinorUnits(load_default=None, metadata={"description": "default: all that remains of the hold"})
    final = fields.Boolean(
        truthy={True}, falsy={False}, load_default=False, metadata={"description": "release the rest afterwards"}
    )


class HoldSchema(Schema):
    id = fields.UUID()
    organization_id = fields.UUID()
    created_by = fields.UUID(allow_none=True)
    status = fields.String()
    amount = fields.Integer()
    captured_amount = fields.Integer()
    remaining_amount = fields.Integer(metadata={"description": "still held: amount less captured, 0 once ended"})
    currency = fields.String()
    source_wallet_id = fields.UUID()
    destination_wallet_id = fields.UUID()
    expires_in = fields.Integer()
    expires_at = fields.DateTime(allow_none=True, metadata={"description": "set when the funds are held"})
    captures = fields.List(fields.UUID(), metadata={"description": "its CAPTURE transactions, oldest first"})
    failure_reason = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    metadata = fields.Dict(allow_none=True)
    created_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)


class HoldFilterSchema(PageArgsSchema):
    status = fields.String(validate=validate.OneOf([s.value for s in HoldStatus]), load_default=None)
    wallet_id = fields.UUID(load_default=None)
