"""Keyset pagination, newest first, over (created_at, id) or any pair of monotonic columns."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from ledger.errors import InvalidRequest

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(values: tuple[Any, ...]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: tuple[type, ...]) -> tuple[Any, ...]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != len(kinds):
            raise ValueError("wrong cursor shape")
        return tuple(_parse(kind, value) for kind, value in zip(kinds, raw, strict=True))
    except (ValueError, TypeError) as error:
        raise InvalidRequest("cursor is not valid", code="INVALID_CURSOR") from error


def _parse(kind: type, value: Any) -> Any:
    if kind is datetime:
        return datetime.fromisoformat(value)
    if kind is uuid.UUID:
        return uuid.UUID(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"cursor value {value!r} is not a {kind.__name__}")


def paginate(
    session: Session,
    query: Select[tuple[T]],
    *,
    keys: tuple[InstrumentedAttribute[Any], ...],
    kinds: tuple[type, ...],
    limit: int,
    cursor: str | None,
) -> Page[T]:
    """Rows strictly after the cursor in descending key order, plus the cursor of the next page."""
    if cursor:
        query = query.where(tuple_(*keys) < tuple_(*decode_cursor(cursor, kinds)))
    rows = list(session.scalars(query.order_by(*(key.desc() for key in keys)).limit(limit + 1)))
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    last = rows[-1]
    return Page(rows, encode_cursor(tuple(getattr(last, key.key) for key in keys)))
