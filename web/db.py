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


@contextmanager
def one_statement() -> Iterator[Session]:
    """A unit of work whose writes are all in one statement, run on an autocommit connection: the
    statement is its own transaction, committed by the server as it answers. One round trip where
    BEGIN, the statement and COMMIT took three; the commit is the same one, and a statement is
    atomic on its own. What the block reads after it (why a rule refused, an idempotent replay)
    sees committed data, as the next statement of a read-committed transaction would.

    Only for a block that writes once: two writes here would commit one by one. The session's
    after-commit hooks (metrics, wakes) still run when the block ends cleanly."""
    with session_factory().begin() as session:
        # The first connection of the session's transaction takes the option; the pool resets it
        # when the connection is returned (a client-side flag of the driver: no round trip).
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session
