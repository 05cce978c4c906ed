"""Wallet shapes."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from models import MemberRole, WalletStatus, WalletType
from web.schemas.common import PageArgsSchema
from web.schemas.fields import DEFAULT_CURRENCY, MinorUnits, bounded_string, currency

WALLET_TYPES = [t.value for t in WalletType]
WALLET_STATUSES = [s.value for s in WalletStatus]


class WalletCreateSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(WALLET_TYPES))
    currency = currency(load_default=DEFAULT_CURRENCY)
    name = bounded_string(100, load_default=None)


class WalletSchema(Schema):
    id = fields.UUID()
    organization_id = fields.UUID()
    owner_id = fields.UUID()
    type = fields.String()
    currency = fields.String()
    status = fields.String()
    name = fields.String()
    balance = fields.Integer()
    held_amount = fields.Integer(metadata={"description": "reserved by this wallet's open holds"})
    available_balance = fields.Integer(
        metadata={"description": "balance less held_amount: what a debit (transfer, withdrawal, hold) may take"}
    )
    version = fields.Integer()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class WalletFilterSchema(PageArgsSchema):
    type = fields.String(validate=validate.OneOf(WALLET_TYPES), load_default=None)
    status = fields.String(validate=validate.OneOf(WALLET_STATUSES), load_default=None)
    currency = currency(load_default=None)


class WalletPatchSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(WALLET_STATUSES))


class MemberGrantSchema(Schema):
    user_id = fields.UUID(required=True)
    role = fields.String(required=True, validate=validate.OneOf([r.value for r in MemberRole]))


class MemberSchema(Schema):
    id = fields.UUID()
    wallet_id = fields.UUID()
    user_id = fields.UUID()
    role = fields.String()
    granted_by = fields.UUID()
    created_at = fields.DateTime()


class AmountSchema(Schema):
    amount = MinorUnits(required=True)
    description = bounded_string(500, load_default=None)


class LedgerEntrySchema(Schema):
    id = fields.UUID()
    wallet_id = fields.UUID()
    transaction_id = fields.UUID()
    direction = fields.String()
    amount = fields.Integer()
    balance_after = fields.Integer()
    wallet_version = fields.Integer()
    created_at = fields.DateTime()


class BalanceQuerySchema(Schema):
    as_of = fields.AwareDateTime(load_default=None, metadata={"description": "ISO 8601 instant with offset"})


class BalanceSchema(Schema):
    wallet_id = fields.UUID()
    currency = fields.String()
    balance = fields.Integer()
    version = fields.Integer()
    as_of = fields.DateTime()


class TotalsSchema(Schema):
    currency = fields.String()
    type = fields.String()
    wallet_count = fields.Integer()
    balance_total = fields.Integer()


class SummarySchema(Schema):
    organization_id = fields.UUID()
    totals = fields.List(fields.Nested(TotalsSchema))
    counts_by_status = fields.Dict(keys=fields.String(), values=fields.Integer())
    wallet_count = fields.Integer()
