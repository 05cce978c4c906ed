"""Shapes for reconciliation runs and the audit log."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from models import ReconciliationMode
from models.audit import AUDIT_ACTION_LENGTH_MAX
from web.schemas.common import PageArgsSchema


class ReconciliationRequestSchema(Schema):
    mode = fields.String(
        load_default=ReconciliationMode.INCREMENTAL.value,
        validate=validate.OneOf([m.value for m in ReconciliationMode]),
        metadata={"description": "INCREMENTAL: what changed since the last clean run; FULL: everything"},
    )
    organization_id = fields.UUID(
        load_default=None,
        metadata={"description": "Operators only: one organisation instead of the whole platform"},
    )


class FindingSchema(Schema):
    id = fields.UUID()
    check = fields.String(metadata={"example": "BALANCE_MISMATCH"})
    organization_id = fields.UUID(allow_none=True)
    wallet_id = fields.UUID(allow_none=True)
    transaction_id = fields.UUID(allow_none=True)
    currency = fields.String(allow_none=True)
    expected = fields.Integer(allow_none=True)
    actual = fields.Integer(allow_none=True)
    difference = fields.Integer(allow_none=True, metadata={"description": "actual - expected"})
    detail = fields.Dict(allow_none=True)


class ReconciliationRunSchema(Schema):
    id = fields.UUID()
    mode = fields.String()
    status = fields.String(metadata={"example": "CLEAN"})
    organization_id = fields.UUID(allow_none=True, metadata={"description": "null: the whole platform"})
    triggered_by = fields.UUID(allow_none=True)
    trigger = fields.String()
    started_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    duration_ms = fields.Integer()
    wallets_checked = fields.Integer()
    entries_checked = fields.Integer()
    transactions_checked = fields.Integer()
    findings_count = fields.Integer()


class ReconciliationRunDetailSchema(ReconciliationRunSchema):
    findings = fields.List(fields.Nested(FindingSchema))


class AuditFilterSchema(PageArgsSchema):
    action = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=AUDIT_ACTION_LENGTH_MAX),
        metadata={"description": "an action (`wallet.created`), or a prefix ending in a dot (`wallet.`)"},
    )
    actor_id = fields.UUID(load_default=None)
    target_id = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    occurred_after = fields.AwareDateTime(load_default=None)
    occurred_before = fields.AwareDateTime(load_default=None)


class AuditLogSchema(Schema):
    id = fields.UUID()
    occurred_at = fields.DateTime()
    organization_id = fields.UUID(allow_none=True)
    actor_id = fields.UUID(allow_none=True)
    actor_label = fields.String(allow_none=True)
    action = fields.String(metadata={"example": "wallet.status_changed"})
    target_type = fields.String(allow_none=True)
    target_id = fields.String(allow_none=True)
    before = fields.Dict(allow_none=True)
    after = fields.Dict(allow_none=True)
    source_address = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)


class FailedLoginSchema(Schema):
    id = fields.UUID()
    occurred_at = fields.DateTime()
    reason = fields.String(
        allow_none=True, metadata={"description": "UNKNOWN_EMAIL, WRONG_PASSWORD or USER_DEACTIVATED"}
    )
    email = fields.String(
        allow_none=True, metadata={"description": "the account's email; null for an email nobody has (never stored)"}
    )
    email_hash = fields.String(
        allow_none=True,
        metadata={"description": "HMAC-SHA256 of the email as typed (trimmed, lower-cased): equal for the same email"},
    )
    user_id = fields.UUID(allow_none=True, metadata={"description": "the account, when the email names one"})
    organization_id = fields.UUID(allow_none=True)
    source_address = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
