"""Transfer intent shapes."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from models import DESCRIPTION_LENGTH_MAX, TransactionStatus, TransactionType
from web.schemas.common import PageArgsSchema
from web.schemas.fields import DEFAULT_CURRENCY, BoundedDict, MinorUnits, bounded_string, currency

METADATA_BYTES_MAX = 4096


class TransferSchema(Schema):
    source_wallet_id = fields.UUID(required=True)
    destination_wallet_id = fields.UUID(required=True)
    amount = MinorUnits(required=True)
    currency = currency(load_default=DEFAULT_CURRENCY)
    description = bounded_string(DESCRIPTION_LENGTH_MAX, load_default=None)
    metadata = BoundedDict(METADATA_BYTES_MAX, load_default=None)


class RefundSchema(Schema):
    amount = MinorUnits(
        load_default=None,
        metadata={"description": "Integer amount in minor units; by default all that is left to refund"},
    )
    reason = bounded_string(DESCRIPTION_LENGTH_MAX, load_default=None)


class TransactionSchema(Schema):
    id = fields.UUID()
    organization_id = fields.UUID()
    created_by = fields.UUID(allow_none=True)
    type = fields.String()
    status = fields.String()
    failure_reason = fields.String(allow_none=True)
    source_wallet_id = fields.UUID()
    destination_wallet_id = fields.UUID()
    amount = fields.Integer()
    currency = fields.String()
    description = fields.String(allow_none=True)
    metadata = fields.Dict(attribute="metadata_", allow_none=True)
    idempotency_key = fields.String(allow_none=True)
    created_at = fields.DateTime()
    completed_at = fields.DateTime(allow_none=True)
    # The cross-organisation settlement batch that settled it (and its clearing obligation), if any.
    settlement_batch_id = fields.UUID(allow_none=True, dump_only=True)
    # On a CLEARING obligation: the cross-organisation transfer it was posted for.
    parent_transaction_id = fields.UUID(allow_none=True, dump_only=True)
    # On a CAPTURE: the hold it takes from (/holds/{id}).
    hold_id = fields.UUID(allow_none=True, dump_only=True)
    # The X-Request-ID of the API request that accepted it: the same id is on its log lines.
    request_id = fields.String(allow_none=True, dump_only=True)
    # Settling it kept failing: it stays PENDING, passed by the workers, until an operator acts
    # (ledger/settlement/parking.py). `park_reason` is the error's kind and first line.
    parked = fields.Function(lambda t: getattr(t, "parked_at", None) is not None, dump_only=True)
    parked_at = fields.DateTime(allow_none=True, dump_only=True)
    park_reason = fields.String(allow_none=True, dump_only=True)
    # On a REFUND: the transaction it refunds. On others: what their PENDING and COMPLETED refunds
    # add up to (a refund that fails or is cancelled no longer counts), and every refund made of it.
    refund_of = fields.UUID(allow_none=True, dump_only=True)
    refunded_amount = fields.Integer(dump_only=True)
    refunds = fields.List(fields.UUID(), dump_only=True)
    # Fraud review (IN_REVIEW): the rules it tripped, when it entered review, and the decision
    # (APPROVED, REJECTED or EXPIRED) with who made it, when and why.
    review_reasons = fields.List(fields.String(), allow_none=True, dump_only=True)
    review_started_at = fields.DateTime(allow_none=True, dump_only=True)
    review_decision = fields.String(allow_none=True, dump_only=True)
    reviewed_by = fields.UUID(allow_none=True, dump_only=True)
    reviewed_at = fields.DateTime(allow_none=True, dump_only=True)
    review_note = fields.String(allow_none=True, dump_only=True)


class WaitQuerySchema(Schema):
    wait = fields.Float(
        load_default=0,
        validate=validate.Range(min=0, max=30),
        metadata={"description": "hold the answer until the status is final, at most this many seconds"},
    )


class TransactionFilterSchema(PageArgsSchema):
    status = fields.String(validate=validate.OneOf([s.value for s in TransactionStatus]), load_default=None)
    type = fields.String(validate=validate.OneOf([t.value for t in TransactionType]), load_default=None)
    wallet_id = fields.UUID(load_default=None)
    created_after = fields.AwareDateTime(load_default=None)
    created_before = fields.AwareDateTime(load_default=None)
