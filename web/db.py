"""A unit of work per request: one database transaction, committed when the block ends cleanly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from models.db import session_factory


@contextmanager
def unit_of_work() -> Iterator[Session]:
    with session_factory().begin() as session:
        yield session
