"""Settlement batch shapes."""

from __future__ import annotations

from marshmallow import Schema, fields

from web.schemas.common import PageArgsSchema


class SettlementRunSchema(Schema):
    cut_off = fields.AwareDateTime(
        load_default=None,
        metadata={"description": "settle obligations completed before this instant (default: now)"},
    )


class SettlementTotalSchema(Schema):
    currency = fields.String()
    gross_amount = fields.Integer(metadata={"description": "sum of every cross-organisation transfer settled"})
    settled_amount = fields.Integer(metadata={"description": "what actually moved after netting"})
    transfer_count = fields.Integer()


class SettlementLegSchema(Schema):
    id = fields.UUID()
    organization_id = fields.UUID()
    currency = fields.String()
    sent_amount = fields.Integer(metadata={"description": "gross sent to other organisations"})
    received_amount = fields.Integer(metadata={"description": "gross received from other organisations"})
    net_position = fields.Integer(
        metadata={
            "description": "sent - received: > 0 the organisation pays, < 0 it receives; the treasury moves by it"
        }
    )
    direction = fields.String(metadata={"description": "PAY, RECEIVE or FLAT"})
    amount = fields.Integer(metadata={"description": "absolute value of net_position"})
    transfer_count = fields.Integer()
    treasury_wallet_id = fields.UUID()
    clearing_wallet_id = fields.UUID()
    transaction_id = fields.UUID(allow_none=True, metadata={"description": "the SETTLEMENT posting; null when FLAT"})


class SettlementSkipSchema(Schema):
    organization_id = fields.UUID()
    currency = fields.String()
    reason = fields.String(metadata={"description": "TREASURY_NOT_ACTIVE or CLEARING_NOT_ACTIVE"})
    wallet_id = fields.UUID(metadata={"description": "the treasury or clearing wallet that could not take the leg"})
    wallet_status = fields.String(metadata={"description": "LOCKED or CLOSED"})
    obligation_count = fields.Integer(metadata={"description": "obligations left unsettled for a later batch"})
    obligation_amount = fields.Integer(metadata={"description": "their gross amount"})


class SettlementBatchSchema(Schema):
    id = fields.UUID()
    status = fields.String()
    trigger = fields.String(metadata={"description": "SCHEDULE, OPERATOR or CLI"})
    window_start = fields.DateTime(allow_none=True)
    cut_off = fields.DateTime()
    transfer_count = fields.Integer(
        metadata={"description": "obligations settled: all of them for an operator, those naming your organisation"}
    )
    totals = fields.List(
        fields.Nested(SettlementTotalSchema),
        metadata={
            "description": "per currency: the platform's for an operator; for an OWNER/ADMIN the sum of your own"
            " legs (gross = sent + received, settled = your net either way)"
        },
    )
    legs = fields.List(
        fields.Nested(SettlementLegSchema),
        metadata={"description": "all legs for an operator; your organisation's for an OWNER/ADMIN"},
    )
    skipped = fields.List(
        fields.Nested(SettlementSkipSchema),
        metadata={
            "description": "organisations left out because their treasury or clearing wallet was not ACTIVE;"
            " their obligations wait for a later batch (all for an operator, your own for an OWNER/ADMIN)"
        },
    )
    created_at = fields.DateTime()


SettlementListArgsSchema = PageArgsSchema
