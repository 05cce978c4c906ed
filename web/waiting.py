"""`?wait=N` on a read: hold the answer until the object is final or N seconds pass.

One poll loop for every resource that offers it (transactions, P2P requests): the first read is
answered at once when it is already final; otherwise the object is read again with a growing pause,
so a wait that ends soon answers soon and a long one costs a few reads per second at most.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

WAIT_POLL_SECONDS_MIN, WAIT_POLL_SECONDS_MAX = 0.02, 0.25

Read = TypeVar("Read")


def read_until_final(read: Callable[[], Read], is_final: Callable[[Read], bool], wait_seconds: float) -> Read:
    """`read()` until `is_final` holds for its answer or `wait_seconds` have passed; the last answer."""
    answer = read()
    deadline = time.monotonic() + wait_seconds
    pause = WAIT_POLL_SECONDS_MIN
    while not is_final(answer) and time.monotonic() < deadline:
        time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 2, WAIT_POLL_SECONDS_MAX)
        answer = read()
    return answer
