"""Peer-to-peer request shapes."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from models.p2p import NOTE_LENGTH_MAX, P2PStatus
from web.schemas.common import PageArgsSchema
from web.schemas.fields import DEFAULT_CURRENCY, MinorUnits, bounded_string, currency
from web.schemas.transactions import TransactionSchema


class P2PRequestCreateSchema(Schema):
    payer_email = fields.Email(required=True, validate=validate.Length(max=254))
    amount = MinorUnits(required=True)
    currency = currency(load_default=DEFAULT_CURRENCY)
    destination_wallet_id = fields.UUID(required=True, metadata={"description": "your wallet the money goes to"})
    note = bounded_string(NOTE_LENGTH_MAX, load_default=None)


class P2PSettleSchema(Schema):
    source_wallet_id = fields.UUID(required=True, metadata={"description": "your wallet the money comes from"})


class P2PListArgsSchema(PageArgsSchema):
    role = fields.String(
        validate=validate.OneOf(["payer", "payee"]),
        load_default=None,
        metadata={"description": "only requests where you are this party"},
    )
    status = fields.String(validate=validate.OneOf([s.value for s in P2PStatus]), load_default=None)


class P2PRequestSchema(Schema):
    id = fields.UUID()
    status = fields.String(metadata={"description": "REQUESTED, SETTLING, SETTLED, FAILED, DECLINED or CANCELLED"})
    payee_id = fields.UUID()
    payee_email = fields.String()
    payee_organization_id = fields.UUID()
    payer_id = fields.UUID(
        allow_none=True, metadata={"description": "null until the payer settles or declines the request"}
    )
    payer_email = fields.String()
    payer_organization_id = fields.UUID(
        allow_none=True, metadata={"description": "null until the payer settles or declines the request"}
    )
    amount = fields.Integer()
    currency = fields.String()
    destination_wallet_id = fields.UUID()
    note = fields.String(allow_none=True)
    transaction_id = fields.UUID(allow_none=True)
    failure_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    resolved_at = fields.DateTime(allow_none=True)


class P2PSettledSchema(Schema):
    request = fields.Nested(P2PRequestSchema)
    transaction = fields.Nested(TransactionSchema)
