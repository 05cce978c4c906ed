"""Shapes shared by every resource: errors, pagination."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from settings import Settings


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"example": "INSUFFICIENT_FUNDS"})
    message = fields.String(required=True)
    details = fields.Raw(allow_none=True)


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


class PageArgsSchema(Schema):
    limit = fields.Integer(
        load_default=Settings.page_size_default,
        validate=validate.Range(min=1, max=Settings.page_size_max),
    )
    cursor = fields.String(load_default=None, validate=validate.Length(max=500))


def page_schema(item_schema: type[Schema], name: str) -> type[Schema]:
    """{"items": [...], "next_cursor": "..." | null} around an item schema."""
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item_schema), required=True),
            "next_cursor": fields.String(allow_none=True, required=True),
        },
        name=name,
    )


class IdempotencyHeaderSchema(Schema):
    """The optional Idempotency-Key header; other headers pass through untouched."""

    class Meta:
        unknown = EXCLUDE

    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        load_default=None,
        validate=validate.Length(min=1, max=255),
        metadata={"description": "Retry-safe key, scoped to your organisation"},
    )
