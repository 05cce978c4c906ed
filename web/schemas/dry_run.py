"""Dry run shapes: the `dry_run` query argument and the predicted outcome it answers with."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from web.schemas.bulk import BulkItemResultSchema, BulkResultSchema

WOULD_STATUSES = ("COMPLETED", "HELD", "IN_REVIEW", "FAILED")


class DryRunQuerySchema(Schema):
    """`?dry_run=true`: answer what the call would do, and write nothing. Other arguments pass by."""

    class Meta:
        unknown = EXCLUDE

    dry_run = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Answer 200 with the predicted outcome from the state at this moment, and write"
            " nothing: no row, no audit entry, no event, no idempotency record."
        },
    )


class WalletAmountsSchema(Schema):
    balance = fields.Integer(required=True)
    held_amount = fields.Integer(required=True)
    available_balance = fields.Integer(required=True)


def _would_status(*, allow_none: bool = False) -> fields.String:
    return fields.String(required=True, allow_none=allow_none, validate=validate.OneOf(WOULD_STATUSES))


def _balances_after(*, allow_none: bool = False) -> fields.Dict:
    return fields.Dict(
        keys=fields.String(),
        values=fields.Nested(WalletAmountsSchema),
        required=True,
        allow_none=allow_none,
        metadata={"description": "Each of the intent's wallets the caller may see, by id, as it would stand"},
    )


class DryRunSchema(Schema):
    dry_run = fields.Boolean(required=True)
    would_status = _would_status()
    failure_reason = fields.String(required=True, allow_none=True)
    balances_after = _balances_after()


class BulkDryRunItemSchema(BulkItemResultSchema):
    """An item's result as the real call would give it (a new item has no transaction: none was
    written), with its prediction; a refused item predicts nothing."""

    would_status = _would_status(allow_none=True)
    failure_reason = fields.String(required=True, allow_none=True)
    balances_after = _balances_after(allow_none=True)


class BulkDryRunSchema(BulkResultSchema):
    dry_run = fields.Boolean(required=True)
    items = fields.List(fields.Nested(BulkDryRunItemSchema), required=True)
