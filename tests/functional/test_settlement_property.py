"""Property: whatever P2P and cross-organisation traffic flows among five organisations, a batch
leaves every clearing wallet at 0, moves each treasury by exactly its net position, nets to 0, keeps
every currency's balances summing to 0, and names itself on every transfer it settled."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.functional.test_cross_org import currency_totals, entries_of, rows, scalar, system_balance

ORGANIZATIONS = 5
CURRENCIES = ("INR", "USD")
FUNDING = 200_000
MORE_THAN_ANY_WALLET_HOLDS = 10 * FUNDING


@dataclass
class Bank:
    user: object
    wallets: dict[str, tuple[str, str]]  # currency -> (funded wallet, second wallet)

    @property
    def organization_id(self) -> str:
        return self.user.organization_id  # type: ignore[attr-defined]


operation = st.tuples(
    st.sampled_from(["transfer", "p2p"]),
    st.integers(min_value=0, max_value=ORGANIZATIONS - 1),
    st.integers(min_value=0, max_value=ORGANIZATIONS - 1),
    st.sampled_from(CURRENCIES),
    st.one_of(st.integers(min_value=1, max_value=20_000), st.just(MORE_THAN_ANY_WALLET_HOLDS)),
)


def _open_banks(api) -> list[Bank]:
    banks = []
    for _ in range(ORGANIZATIONS):
        owner = api.signup()
        wallets = {
            currency: (api.funded_wallet(owner, FUNDING, currency), api.create_wallet(owner, currency=currency))
            for currency in CURRENCIES
        }
        banks.append(Bank(owner, wallets))
    return banks


def _submit(api, banks, op) -> tuple[str, str | None, int, int, str, int]:
    """Submit one operation; (transaction id, p2p request id, payer index, payee index, currency, amount)."""
    kind, payer, payee, currency, amount = op
    source = banks[payer].wallets[currency][0]
    destination = banks[payee].wallets[currency][1 if payer == payee else 0]
    if kind == "p2p" and payer != payee:
        request = api.p2p_request(banks[payee].user, banks[payer].user, destination, amount, currency=currency)
        response = api.p2p_settle(banks[payer].user, request["id"], source)
        assert response.status_code == 202, response.json
        return response.json["transaction"]["id"], request["id"], payer, payee, currency, amount
    response = api.transfer(banks[payer].user, source, destination, amount, currency=currency)
    assert response.status_code == 202, response.json
    return response.json["id"], None, payer, payee, currency, amount


def test_a_batch_settles_any_traffic_exactly(api):
    operator = api.operator()
    banks = _open_banks(api)
    api.run_settlement(operator)  # earlier tests' obligations are not this test's business

    @settings(
        max_examples=15,
        deadline=None,
        # Each example is real HTTP, a real worker and a real batch: report a failure as found.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(operation, min_size=1, max_size=10))
    def check(operations):
        treasuries = {
            (i, c): system_balance(b.organization_id, "treasury", c) for i, b in enumerate(banks) for c in CURRENCIES
        }
        submitted = [_submit(api, banks, op) for op in operations]
        expected_net: dict[tuple[int, str], int] = defaultdict(int)
        crossing, completed_crossing = [], set()
        for transaction_id, request_id, payer, payee, currency, amount in submitted:
            final = api.wait_final(banks[payer].user, transaction_id)
            assert final["status"] in ("COMPLETED", "FAILED")
            if request_id is not None:
                request = api.p2p_get(banks[payee].user, request_id).json
                assert request["status"] == ("SETTLED" if final["status"] == "COMPLETED" else "FAILED")
            if payer != payee:
                crossing.append(transaction_id)
                if final["status"] == "COMPLETED":
                    completed_crossing.add(transaction_id)
                    expected_net[(payer, currency)] += amount
                    expected_net[(payee, currency)] -= amount

        batch = api.run_settlement(operator)

        assert scalar("SELECT count(*) FROM wallets WHERE type = 'SYSTEM' AND name = 'clearing' AND balance <> 0") == 0
        for (i, currency), before in treasuries.items():
            moved = system_balance(banks[i].organization_id, "treasury", currency) - before
            assert moved == expected_net[(i, currency)], (i, currency)
        legs = {(leg["organization_id"], leg["currency"]): leg["net_position"] for leg in batch["legs"]}
        for currency in CURRENCIES:
            assert sum(net for (_, c), net in legs.items() if c == currency) == 0
        for (i, currency), net in expected_net.items():
            assert legs.get((banks[i].organization_id, currency), 0) == net
        assert all(total == 0 for total in currency_totals().values())

        assert batch["transfer_count"] == len(completed_crossing)
        included = {
            r.id
            for r in rows(
                "SELECT id::text FROM transactions WHERE settlement_batch_id = :batch AND type = 'TRANSFER'",
                batch=batch["id"],
            )
        }
        assert included == completed_crossing
        for transaction_id in completed_crossing:
            assert sorted(direction for _, direction, _ in entries_of(transaction_id)) == ["CREDIT", "DEBIT"]
        for transaction_id in set(crossing) - completed_crossing:
            assert entries_of(transaction_id) == []

    check()
