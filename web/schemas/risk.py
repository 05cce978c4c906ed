"""Risk limit shapes: each limit is null (no limit) or a strict positive integer."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from web.schemas.fields import MinorUnits

# transfers_per_minute_max_per_wallet is an INTEGER column; no sane limit comes near this.
TRANSFERS_PER_MINUTE_LIMIT_MAX = 1_000_000


def _amount_limit(description: str) -> MinorUnits:
    return MinorUnits(load_default=None, allow_none=True, metadata={"description": description})


class RiskLimitsUpdateSchema(Schema):
    """PUT replaces all three limits: an omitted or null limit is removed."""

    transfer_amount_max = _amount_limit("Largest single outgoing transfer or withdrawal, minor units; null: no limit")
    daily_outgoing_max_per_wallet = _amount_limit(
        "Most one wallet may send per UTC day (transfers and withdrawals), minor units; null: no limit"
    )
    transfers_per_minute_max_per_wallet = MinorUnits(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=1, max=TRANSFERS_PER_MINUTE_LIMIT_MAX),
        metadata={
            "description": "Most outgoing transfers and withdrawals one wallet may complete in 60 s; null: no limit",
            "example": 10,
        },
    )


class RiskLimitsSchema(Schema):
    organization_id = fields.UUID()
    transfer_amount_max = fields.Integer(allow_none=True)
    daily_outgoing_max_per_wallet = fields.Integer(allow_none=True)
    transfers_per_minute_max_per_wallet = fields.Integer(allow_none=True)
    updated_at = fields.DateTime(allow_none=True, metadata={"description": "null: never configured"})
    updated_by = fields.UUID(allow_none=True)
