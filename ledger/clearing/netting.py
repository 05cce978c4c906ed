"""Multilateral netting: many bilateral obligations in, one net figure per organisation and currency out.

Pure: no database. An obligation says `debtor` owes `creditor` `amount` in `currency` (the debtor's
user paid the creditor's user). Each organisation's position is what it owes the network less what
the network owes it; for every currency the positions sum to zero, because every obligation adds
its amount to one position and takes it from another.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

# `session.info` key: the (currency, reason) of every organisation a settlement batch left out
# (ledger/clearing/batches.py), counted once the batch commits (ops/metrics.py). Here, in a module
# that imports nothing of the ledger, so the metrics module can read it without an import cycle.
SETTLEMENT_SKIPS_NOTE = "vaultcraft.settlement_skips"


@dataclass(frozen=True)
class Obligation:
    debtor_organization_id: uuid.UUID
    creditor_organization_id: uuid.UUID
    currency: str
    amount: int


@dataclass
class Position:
    """One organisation's standing in one currency over a set of obligations."""

    organization_id: uuid.UUID
    currency: str
    sent_amount: int = 0
    received_amount: int = 0
    transfer_count: int = 0

    @property
    def net_position(self) -> int:
        """Positive: the organisation owes the others this much (it pays). Negative: it receives."""
        return self.sent_amount - self.received_amount


PositionKey = tuple[uuid.UUID, str]


def net_positions(obligations: Iterable[Obligation]) -> dict[PositionKey, Position]:
    """Every organisation's position per currency, keyed by (organisation, currency)."""
    positions: dict[PositionKey, Position] = {}

    def position(organization_id: uuid.UUID, currency: str) -> Position:
        key = (organization_id, currency)
        if key not in positions:
            positions[key] = Position(organization_id, currency)
        return positions[key]

    for obligation in obligations:
        assert obligation.amount > 0, "an obligation moves a positive amount"
        assert obligation.debtor_organization_id != obligation.creditor_organization_id, "obligations cross orgs"
        debtor = position(obligation.debtor_organization_id, obligation.currency)
        creditor = position(obligation.creditor_organization_id, obligation.currency)
        debtor.sent_amount += obligation.amount
        debtor.transfer_count += 1
        creditor.received_amount += obligation.amount
        creditor.transfer_count += 1
    _assert_zero_sum(positions.values())
    return positions


def _assert_zero_sum(positions: Iterable[Position]) -> None:
    per_currency: dict[str, int] = {}
    for p in positions:
        per_currency[p.currency] = per_currency.get(p.currency, 0) + p.net_position
    assert all(total == 0 for total in per_currency.values()), f"net positions do not sum to zero: {per_currency}"


@dataclass(frozen=True)
class CurrencyTotal:
    currency: str
    gross_amount: int  # sum of every obligation
    settled_amount: int  # what actually moves after netting: the sum of the payers' positions
    transfer_count: int


def currency_totals(obligations: Iterable[Obligation], positions: Iterable[Position]) -> list[CurrencyTotal]:
    gross: dict[str, int] = {}
    counts: dict[str, int] = {}
    for obligation in obligations:
        gross[obligation.currency] = gross.get(obligation.currency, 0) + obligation.amount
        counts[obligation.currency] = counts.get(obligation.currency, 0) + 1
    settled: dict[str, int] = dict.fromkeys(gross, 0)
    for p in positions:
        settled[p.currency] = settled.get(p.currency, 0) + max(p.net_position, 0)
    return [CurrencyTotal(c, gross[c], settled[c], counts[c]) for c in sorted(gross)]


class Standing(Protocol):
    """A position as netting computed it or as a batch recorded it (a settlement leg)."""

    @property
    def currency(self) -> str: ...
    @property
    def sent_amount(self) -> int: ...
    @property
    def received_amount(self) -> int: ...
    @property
    def net_position(self) -> int: ...
    @property
    def transfer_count(self) -> int: ...


def organization_totals(standings: Iterable[Standing]) -> list[CurrencyTotal]:
    """One organisation's totals over its own positions: the obligations it is party to (gross: what it
    sent plus what it received), what its treasury moved (settled: its net, either way) and how many
    obligations named it. The batch's own totals describe the whole platform: an organisation in the
    batch sees these instead, which say nothing about the other organisations' traffic."""
    gross: dict[str, int] = {}
    settled: dict[str, int] = {}
    counts: dict[str, int] = {}
    for s in standings:
        gross[s.currency] = gross.get(s.currency, 0) + s.sent_amount + s.received_amount
        settled[s.currency] = settled.get(s.currency, 0) + abs(s.net_position)
        counts[s.currency] = counts.get(s.currency, 0) + s.transfer_count
    return [CurrencyTotal(c, gross[c], settled[c], counts[c]) for c in sorted(gross)]
