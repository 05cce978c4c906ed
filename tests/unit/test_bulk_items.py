"""Bulk items: the fast path agrees with the schema, and the fingerprint with the single transfer's."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger.idempotency import request_hash
from ledger.intents.bulk import BulkItem, transfer_fingerprint
from ledger.intents.transfers import TransferRequest
from web.schemas.bulk import WELL_FORMED_FIELDS, BulkTransferItemSchema, item_from_schema, well_formed_item

SCHEMA = BulkTransferItemSchema()
SOURCE, DESTINATION = str(uuid.uuid4()), str(uuid.uuid4())
PLAIN = {"source_wallet_id": SOURCE, "destination_wallet_id": DESTINATION, "amount": 100, "idempotency_key": "k-1"}


def _by_schema(raw: Any) -> BulkItem | None:
    try:
        return item_from_schema(SCHEMA.load(raw))
    except Exception:
        return None


def test_a_plain_item_takes_the_fast_path_to_what_the_schema_loads():
    assert well_formed_item(PLAIN) == _by_schema(PLAIN) == BulkItem(SOURCE, DESTINATION, 100, "INR", None, None, "k-1")
    described = {**PLAIN, "currency": "USD", "description": "rent"}
    assert well_formed_item(described) == _by_schema(described)


def test_the_fast_path_knows_exactly_the_schema_fields():
    assert {field.data_key or name for name, field in SCHEMA.load_fields.items()} == WELL_FORMED_FIELDS


def _uuid_text() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.uuids().map(str),
        st.uuids().map(lambda u: str(u).upper()),
        st.uuids().map(lambda u: u.hex),
        st.uuids().map(lambda u: f"{{{u}}}"),
        st.text(max_size=40),
        st.integers(),
        st.none(),
    )


_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "source_wallet_id": _uuid_text(),
    "destination_wallet_id": _uuid_text(),
    "amount": st.one_of(
        st.integers(-2, 10**16), st.floats(allow_nan=False), st.booleans(), st.text(max_size=5), st.none()
    ),
    "currency": st.one_of(st.sampled_from(["INR", "USD", "inr", "IN", "INR\n", " INR", ""]), st.text(max_size=4)),
    "description": st.one_of(st.none(), st.text(max_size=3), st.text(min_size=499, max_size=502), st.integers()),
    "metadata": st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
    "idempotency_key": st.one_of(st.text(max_size=3), st.text(min_size=254, max_size=256), st.none(), st.integers()),
    "unexpected": st.integers(),
}


@st.composite
def _raw_items(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 20)) == 0:
        return draw(st.one_of(st.none(), st.text(), st.lists(st.integers())))
    names = draw(st.sets(st.sampled_from(sorted(_VALUES))))
    raw = {"source_wallet_id": SOURCE, "destination_wallet_id": DESTINATION, "amount": 1, "idempotency_key": "k"}
    for name in draw(st.sets(st.sampled_from(sorted(raw)), max_size=1)):
        del raw[name]
    raw.update({name: draw(_VALUES[name]) for name in names})
    return raw


@settings(max_examples=500)
@given(_raw_items())
@example({**PLAIN, "currency": "INR\n"})
@example({**PLAIN, "description": None})
@example({**PLAIN, "description": ""})
@example({**PLAIN, "amount": True})
@example({**PLAIN, "metadata": None})
def test_what_the_fast_path_accepts_the_schema_loads_to_the_same_item(raw):
    fast = well_formed_item(raw)
    if fast is not None:
        assert _by_schema(raw) == fast


_ITEMS = st.builds(
    BulkItem,
    st.uuids().map(str),
    st.uuids().map(str),
    st.integers(1, 10**15),
    st.text(min_size=3, max_size=3),
    st.one_of(st.none(), st.text(max_size=20)),
    st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.recursive(st.integers() | st.text(), st.lists))),
    st.text(min_size=1, max_size=5),
)


@given(_ITEMS)
@example(BulkItem(SOURCE, DESTINATION, 5, "INR", 'quote " and \\ and é and \u2028', {"b": 1, "a": [1, "x"]}, "k"))
def test_the_fingerprint_is_the_single_transfers(item):
    request = TransferRequest(
        source_wallet_id=uuid.UUID(item.source_wallet_id),
        destination_wallet_id=uuid.UUID(item.destination_wallet_id),
        amount=item.amount,
        currency=item.currency,
        description=item.description,
        metadata=item.metadata,
    )
    assert transfer_fingerprint(item) == request_hash("transfer", request.fingerprint_body())
