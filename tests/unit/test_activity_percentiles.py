"""Percentiles estimated from the activity rollup's log-scale latency histogram (ledger/analytics.py):
each estimate lies in the bucket of the true value, so within a factor 2^(1/2) of it."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from ledger.analytics import bucket_bounds_ms, percentile_ms
from models.activity import LATENCY_BUCKETS


def bucket_of(ms: float) -> int:
    """As the SQL files a latency (ledger/analytics.py `_BUCKET`)."""
    return min(LATENCY_BUCKETS - 1, max(0, math.floor(2 * math.log2(max(ms, 0.5))) + 1))


def test_buckets_tile_the_line() -> None:
    for k in range(LATENCY_BUCKETS - 1):
        assert bucket_bounds_ms(k)[1] == bucket_bounds_ms(k + 1)[0]
    for ms in (0.0, 0.99, 1.0, 1.5, 2.0, 3.0, 250.0, 9_000_000.0, 10**9):
        lower, upper = bucket_bounds_ms(bucket_of(ms))
        assert lower <= ms < upper or (ms == lower)


@given(
    st.lists(st.floats(min_value=0, max_value=3_600_000, allow_nan=False), min_size=1, max_size=300),
    st.sampled_from([0.5, 0.95, 0.99]),
)
def test_a_percentile_is_estimated_within_the_bucket_of_the_true_one(latencies: list[float], q: float) -> None:
    histogram = [0] * LATENCY_BUCKETS
    for ms in latencies:
        histogram[bucket_of(ms)] += 1
    true = sorted(latencies)[max(1, math.ceil(q * len(latencies))) - 1]  # nearest rank
    estimate = percentile_ms(histogram, q)
    lower, upper = bucket_bounds_ms(bucket_of(true))
    assert estimate is not None and lower <= estimate <= upper
    if lower >= 1 and not math.isinf(upper):
        assert 2**-0.5 <= estimate / max(true, 1e-9) <= 2**0.5


def test_no_latency_no_percentile() -> None:
    assert percentile_ms([0] * LATENCY_BUCKETS, 0.5) is None
