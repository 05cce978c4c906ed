"""Request fields: money refuses anything but a positive integer; cursors refuse garbage."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import ValidationError

from ledger.errors import InvalidRequest
from ledger.pagination import decode_cursor, encode_cursor
from web.schemas.transactions import TransferSchema

BASE = {"source_wallet_id": str(uuid.uuid4()), "destination_wallet_id": str(uuid.uuid4()), "amount": 1}


@given(st.integers(1, 10**15))
def test_positive_integers_are_accepted_unchanged(amount):
    assert TransferSchema().load({**BASE, "amount": amount})["amount"] == amount


@pytest.mark.parametrize("amount", [0, -1, 1.0, 1.5, "1", True, False, None, 10**15 + 1])
def test_anything_else_is_refused(amount):
    with pytest.raises(ValidationError) as refused:
        TransferSchema().load({**BASE, "amount": amount})
    assert "amount" in refused.value.messages


def test_currency_defaults_to_inr():
    assert TransferSchema().load(BASE)["currency"] == "INR"


def test_cursor_round_trip():
    values = (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), uuid.uuid4())
    assert decode_cursor(encode_cursor(values), (datetime, uuid.UUID)) == values


@pytest.mark.parametrize("cursor", ["", "garbage", encode_cursor((1,)), encode_cursor(("x", "y"))])
def test_bad_cursors_are_invalid_requests(cursor):
    with pytest.raises(InvalidRequest):
        decode_cursor(cursor, (datetime, uuid.UUID))
