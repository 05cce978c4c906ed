"""The console's blueprint, and what every page view shares: the caller, the page arguments, rendering."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, g, render_template, request
from sqlalchemy.orm import Session

from ledger.access import Actor
from ledger.errors import NotFound
from settings import get_settings
from web.db import unit_of_work

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

CURSOR_LENGTH_MAX = 512
FILTER_LENGTH_MAX = 200


@contextmanager
def reading() -> Iterator[tuple[Session, Actor]]:
    """The request's unit of work and the signed-in caller (as the guard read them, this request)."""
    with unit_of_work() as session:
        yield session, g.console_actor


def page_args() -> tuple[int, str | None]:
    """This page's size and cursor. A cursor the ledger cannot read is its InvalidRequest (a 400 page)."""
    cursor = request.args.get("cursor") or None
    if cursor is not None and len(cursor) > CURSOR_LENGTH_MAX:
        cursor = "!"  # refused by the decoder like any other unreadable cursor
    return get_settings().console_page_size, cursor


def arg(name: str) -> str | None:
    """A query argument, stripped, bounded; empty means absent."""
    value = (request.args.get(name) or "").strip()[:FILTER_LENGTH_MAX]
    return value or None


def choice(name: str, allowed: Any) -> Any:
    """A filter whose value must be one of an enum's: anything else is ignored (shown unfiltered)."""
    value = arg(name)
    if value is None:
        return None
    try:
        return allowed(value.upper())
    except ValueError:
        return None


def object_id(value: str, kind: str) -> uuid.UUID:
    """A path id; one that is not a UUID names nothing, so it is the same 404 page as an unknown one."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{kind} not found", code=f"{kind.upper()}_NOT_FOUND") from None


def render(template: str, **context: Any) -> str:
    return render_template(template, actor=g.get("console_actor"), **context)
