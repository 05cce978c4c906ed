"""Intents that debit the same wallet settle in the order they were accepted, whichever endpoint
accepted them (a single transfer, a bulk item, a deposit or withdrawal, a P2P settle).

Accepted order is (created_at, id): the order every claim reads intents in. The rule a batch follows:

    it settles an intent only if no older PENDING intent debits the same wallet outside the batch,
    and no older intent of the batch that debits or credits that wallet was held back;
    otherwise the intent stays PENDING for a later batch (a drain comes back for it).

So neither a settle task naming its own ids (the sweep), nor two drainers whose SKIP LOCKED claims
interleave, nor a batch that leaves some intents for later because another batch holds their
wallets (`ledger.settlement.posting.lock_for`), nor bisection can let a later intent overtake an earlier one on
its source wallet. An older intent claimed by another batch that has not committed is still PENDING
to this batch, so the later one waits for that commit. Two intents whose requests raced have no
order between them to keep: whichever committed its row first is found first.

A credit accepted earlier is kept ahead of a later debit of its destination only inside one batch
(a drain claims the oldest intents, so a deposit and the payout after it usually share one), and
only for a destination that cannot go negative: a SYSTEM wallet's debits never wait for credits.

A parked intent (`ledger.settlement.parking`) is out of the order: it no longer holds its wallet back, so one
intent that cannot be settled never stalls the wallet's later intents. Parking is the operator's
signal that its turn was given up.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Set
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from models import TransactionStatus

if TYPE_CHECKING:
    from ledger.settlement.plan import Intent

AcceptedKey = tuple[datetime, uuid.UUID]

# First, one read of every PENDING intent older than the batch's newest that is not the batch's own,
# in accepted order, through ix_transactions_pending ((created_at, id), the index the claim reads):
# for a batch the claim took from the head of the queue, that is a few rows (intents other batches
# hold right now, or committed late), whatever the backlog or the number of wallets. Found all
# (fewer rows than the limit), they answer for every wallet at once. The status a literal, so the
# partial index's predicate matches.
_OLDER_OUTSIDE = f"""
    SELECT source_wallet_id, created_at, id FROM transactions
     WHERE status = '{TransactionStatus.PENDING}' AND parked_at IS NULL
       AND (created_at, id) < (%(until_at)b, %(until_id)b)
       AND id <> ALL(%(own)b)
     ORDER BY created_at, id
     LIMIT %(limit)b
"""
# How many such rows are read before giving up on reading them at once: a few per intent of the
# batch. A drain batch at the head of the queue finds fewer (what other batches hold); a small batch
# of named intents deep in a backlog (a settle task's own ids) would find the whole backlog ahead of
# it, which it reads wallet by wallet instead, a probe per wallet.
OLDER_OUTSIDE_PER_INTENT = 2
OLDER_OUTSIDE_SLACK = 64
OLDER_OUTSIDE_MAX = 2_000

# Otherwise (a batch of named intents far behind the head of the queue, such as the sweep's), for each
# debited wallet: the oldest PENDING intents that debit it, older than the batch's last intent on it,
# as many as the batch has on it. If one of them is outside the batch, it is among those rows (at most
# that many minus one of the batch's own precede it). Through the partial index
# ix_transactions_pending_source (the status a literal, so the index's predicate matches).
_OLDER_DEBITS = f"""
    SELECT b.wallet_id, o.created_at, o.id
      FROM unnest(%(wallets)b::uuid[], %(until_at)b::timestamptz[], %(until_id)b::uuid[], %(counts)b::int8[])
           AS b(wallet_id, until_at, until_id, n)
     CROSS JOIN LATERAL (
           SELECT t.created_at, t.id FROM transactions t
            WHERE t.source_wallet_id = b.wallet_id AND t.status = '{TransactionStatus.PENDING}'
              AND (t.created_at, t.id) < (b.until_at, b.until_id)
              AND t.parked_at IS NULL
            ORDER BY t.created_at, t.id
            LIMIT b.n) o
     ORDER BY b.wallet_id, o.created_at, o.id
"""


def waiting_behind_others(
    session: Session, intents: Iterable[Intent], accepted_at: Mapping[uuid.UUID, datetime]
) -> set[uuid.UUID]:
    """The intents with an older PENDING intent, outside these, that debits the same wallet."""
    intents = list(intents)
    last: dict[uuid.UUID, AcceptedKey] = {}
    counts: Counter[uuid.UUID] = Counter()
    own = set()
    for intent in intents:
        own.add(intent.id)
        key = (accepted_at[intent.id], intent.id)
        wallet = intent.source_wallet_id
        counts[wallet] += 1
        if wallet not in last or last[wallet] < key:
            last[wallet] = key
    if not last:
        return set()
    oldest_outside = _oldest_outside_at_once(session, own, max(last.values()))
    if oldest_outside is None:
        oldest_outside = _oldest_outside_per_wallet(session, own, last, counts)
    return {
        intent.id
        for intent in intents
        if intent.source_wallet_id in oldest_outside
        and oldest_outside[intent.source_wallet_id] < (accepted_at[intent.id], intent.id)
    }


def _oldest_outside_at_once(
    session: Session, own: Set[uuid.UUID], newest: AcceptedKey
) -> dict[uuid.UUID, AcceptedKey] | None:
    """Per debited wallet, the oldest PENDING intent outside the batch that is older than its newest
    intent; None when there are too many such intents to read at once."""
    limit = min(OLDER_OUTSIDE_MAX, OLDER_OUTSIDE_PER_INTENT * len(own) + OLDER_OUTSIDE_SLACK)
    parameters = {"until_at": newest[0], "until_id": newest[1], "own": list(own), "limit": limit}
    rows = session.connection().exec_driver_sql(_OLDER_OUTSIDE, parameters).all()
    if len(rows) >= limit:
        return None
    oldest: dict[uuid.UUID, AcceptedKey] = {}
    for wallet_id, created_at, other_id in rows:  # oldest first
        oldest.setdefault(wallet_id, (created_at, other_id))
    return oldest


def _oldest_outside_per_wallet(
    session: Session, own: Set[uuid.UUID], last: Mapping[uuid.UUID, AcceptedKey], counts: Counter[uuid.UUID]
) -> dict[uuid.UUID, AcceptedKey]:
    wallets = list(last)
    parameters = {
        "wallets": wallets,
        "until_at": [last[w][0] for w in wallets],
        "until_id": [last[w][1] for w in wallets],
        "counts": [counts[w] for w in wallets],
    }
    oldest: dict[uuid.UUID, AcceptedKey] = {}
    for wallet_id, created_at, other_id in session.connection().exec_driver_sql(_OLDER_DEBITS, parameters):
        if other_id not in own and wallet_id not in oldest:
            oldest[wallet_id] = (created_at, other_id)
    return oldest


def in_order(intents: Iterable[Intent], held_back: Set[uuid.UUID], may_go_negative: Set[uuid.UUID]) -> list[Intent]:
    """The intents that may settle now, in order, when `held_back` ones wait for a later batch. Pure.

    An intent waits too when an earlier intent of the batch that waits debits its source, or credits
    it (unless the source may go negative, as a SYSTEM wallet may: its debits never need a credit).
    """
    debits_waiting: set[uuid.UUID] = set()
    credits_waiting: set[uuid.UUID] = set()
    going = []
    for intent in intents:
        source = intent.source_wallet_id
        if (
            intent.id in held_back
            or source in debits_waiting
            or (source in credits_waiting and source not in may_go_negative)
        ):
            debits_waiting.add(source)
            credits_waiting.add(intent.destination_wallet_id)
        else:
            going.append(intent)
    return going
