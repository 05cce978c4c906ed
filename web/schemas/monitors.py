"""Balance monitor shapes."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from models import MonitorCondition
from web.schemas.fields import AMOUNT_MINOR_MAX, MinorUnits

_CONDITIONS = [c.value for c in MonitorCondition]


class MonitorCreateSchema(Schema):
    condition = fields.String(
        required=True,
        validate=validate.OneOf(_CONDITIONS),
        metadata={"description": "when the monitor is in its condition", "example": "available_balance_below"},
    )
    threshold = MinorUnits(
        required=True,
        validate=validate.Range(min=0, max=AMOUNT_MINOR_MAX),
        metadata={"description": "in minor units, compared with the wallet's available_balance", "example": 10000},
    )


class MonitorSchema(Schema):
    id = fields.UUID()
    wallet_id = fields.UUID()
    organization_id = fields.UUID()
    condition = fields.String(metadata={"enum": _CONDITIONS})
    threshold = fields.Integer()
    in_condition = fields.Boolean(
        metadata={"description": "whether the wallet is in the condition now (the last crossing announced)"}
    )
    created_by = fields.UUID(allow_none=True)
    created_at = fields.DateTime()
