"""Fraud rules and review decisions: each rule is null (off) or a strict positive number."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from models.transaction import REVIEW_NOTE_LENGTH_MAX
from web.schemas.fields import MinorUnits

# max_transfers_per_wallet_per_10_minutes is an INTEGER column; no sane rule comes near this.
TRANSFERS_PER_10_MINUTES_MAX = 1_000_000
# amount_over_wallet_p95_factor is NUMERIC(12, 4).
P95_FACTOR_MAX = 1_000_000


class FraudRulesUpdateSchema(Schema):
    """PUT replaces all four rules: an omitted or null rule is off."""

    review_amount_over = MinorUnits(
        load_default=None, allow_none=True, metadata={"description": "Review a transfer above this, minor units"}
    )
    max_transfers_per_wallet_per_10_minutes = MinorUnits(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=1, max=TRANSFERS_PER_10_MINUTES_MAX),
        metadata={"description": "Review a wallet's transfers beyond this many in any 10 minutes", "example": 10},
    )
    new_destination_amount_over = MinorUnits(
        load_default=None,
        allow_none=True,
        metadata={"description": "Review a transfer above this to a wallet the source never paid, minor units"},
    )
    amount_over_wallet_p95_factor = fields.Float(
        load_default=None,
        allow_none=True,
        allow_nan=False,
        validate=validate.Range(min=0, min_inclusive=False, max=P95_FACTOR_MAX),
        metadata={
            "description": "Review a transfer above this many times the 95th percentile of the source's"
            " last 100 completed transfers (once it has 5)",
            "example": 3,
        },
    )


class FraudRulesSchema(Schema):
    organization_id = fields.UUID()
    review_amount_over = fields.Integer(allow_none=True)
    max_transfers_per_wallet_per_10_minutes = fields.Integer(allow_none=True)
    new_destination_amount_over = fields.Integer(allow_none=True)
    amount_over_wallet_p95_factor = fields.Float(allow_none=True)
    updated_at = fields.DateTime(allow_none=True, metadata={"description": "null: never configured"})
    updated_by = fields.UUID(allow_none=True)


class ReviewDecisionSchema(Schema):
    decision = fields.String(required=True, validate=validate.OneOf(["APPROVE", "REJECT"]))
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=REVIEW_NOTE_LENGTH_MAX))
