"""Notes the domain leaves in `session.info` for whoever counts after the commit.

The domain emits, operations count: `ops.metrics` registers an after-commit hook that reads these
notes (and the ones `ledger.integrity.events`, `ledger.clearing.netting` and
`ledger.integrity.reconciliation` leave) into Prometheus, so nothing in `ledger/` imports upward
and a unit of work that rolls back counts nothing.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

ACCEPTED_KEY = "vaultcraft.accepted"


def note_accepted(session: Session, transaction_type: str, count: int = 1) -> None:
    """Count `count` accepted intents of this type once the unit of work commits."""
    accepted = session.info.setdefault(ACCEPTED_KEY, {})
    accepted[transaction_type] = accepted.get(transaction_type, 0) + count
