"""Fields with the project's rules: money is a strict positive integer, currencies are ISO 4217."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate

from settings import Settings

AMOUNT_MINOR_MAX = Settings.amount_minor_max
CURRENCY_PATTERN = r"^[A-Z]{3}$"
DEFAULT_CURRENCY = "INR"


class MinorUnits(fields.Integer):
    """An amount in minor units: a JSON integer from 1 up to a bound. Floats, strings, booleans,
    zero and negatives are refused rather than coerced, so 10.5 never becomes 10."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("validate", validate.Range(min=1, max=AMOUNT_MINOR_MAX))
        metadata = {"description": "Integer amount in minor units (1050 = 10.50)", "example": 1050}
        metadata.update(kwargs.pop("metadata", {}))
        super().__init__(strict=True, metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("must be an integer number of minor units")
        return int(super()._deserialize(value, attr, data, **kwargs))


def currency(**kwargs: Any) -> fields.String:
    return fields.String(
        validate=validate.Regexp(CURRENCY_PATTERN, error="must be an ISO 4217 code such as INR"),
        metadata={"example": DEFAULT_CURRENCY, "description": "ISO 4217 currency code"},
        **kwargs,
    )


NUL_REFUSED = "must not contain the NUL character (U+0000)"
# The same rule, as the OpenAPI document states it (an ECMA and Python regex).
NUL_FREE_PATTERN = r"^[^\u0000]*$"
METADATA_KEY_LENGTH_MAX = 100


def refuse_nul(value: str) -> None:
    """Postgres text cannot hold U+0000: refused here, as the field's own error, and not by the
    database for the whole request (in a batch, the item alone is rejected)."""
    if "\x00" in value:
        raise ValidationError(NUL_REFUSED)


def bounded_string(length_max: int, *, length_min: int = 1, **kwargs: Any) -> fields.String:
    metadata = {"pattern": NUL_FREE_PATTERN, **kwargs.pop("metadata", {})}
    return fields.String(
        validate=[validate.Length(min=length_min, max=length_max), refuse_nul], metadata=metadata, **kwargs
    )


class BoundedDict(fields.Dict):
    """A free-form JSON object with a bound on its encoded size.

    OpenAPI 3.0 cannot say anything about an object's keys (`propertyNames` is 3.1, and Swagger UI 4
    renders no 3.1 document), nor bound an encoded size: the description states the rules, and the
    422 it answers names this field."""

    def __init__(self, bytes_max: int, **kwargs: Any) -> None:
        super().__init__(keys=fields.String(validate=validate.Length(max=METADATA_KEY_LENGTH_MAX)), **kwargs)
        self.bytes_max = bytes_max
        description = (
            f"JSON object, at most {bytes_max} bytes when encoded; keys of at most {METADATA_KEY_LENGTH_MAX} "
            "characters; no string in it, key or value, may contain U+0000 (422 otherwise)"
        )
        self.metadata = {"description": description, **self.metadata}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        import json

        loaded = super()._deserialize(value, attr, data, **kwargs)
        if len(json.dumps(loaded)) > self.bytes_max:
            raise ValidationError(f"must encode to at most {self.bytes_max} bytes")
        if _holds_nul(loaded):  # jsonb refuses it
            raise ValidationError(NUL_REFUSED)
        return loaded


def _holds_nul(value: Any) -> bool:
    """Whether a string anywhere in decoded JSON, key or value, holds U+0000. (Not a search of the
    encoded text for its escape: that would also match a backslash the client wrote before `u0000`.)"""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(map(_holds_nul, value))
    return False
