"""The outbound HTTP client for webhook attempts: one per process, its connections kept alive.

Built on httpcore (the engine under httpx) because its network backend is the one place every
connection is dialled: `CheckedBackend` resolves the endpoint's host once, checks each address
(notify/addresses.py) and connects to that address, while the URL keeps the name, so the Host header,
TLS SNI and certificate check are all for the name (no DNS rebinding between check and connect).
httpcore never follows redirects, so a 3xx answer is an attempt that failed.

Bounds: each step (connect, send, every read) within `timeout_seconds`, and the whole answer read
before that deadline too; at most `response_bytes_max` of the answer is read, then the connection
is dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore

from notify.addresses import AddressBlocked, checked_addresses

USER_AGENT = "VaultCraft-Webhooks/1"
# Connections per process, and idle ones kept for reuse (each for this long).
CONNECTIONS_MAX = 64
KEEPALIVE_CONNECTIONS_MAX = 32
KEEPALIVE_SECONDS = 60.0


@dataclass(frozen=True)
class Outcome:
    response_status: int | None
    duration_ms: int
    error: str | None  # None: an answer arrived (see `succeeded` for whether it was a 2xx)
    blocked: bool = False
    response_bytes_read: int = 0

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.response_status is not None and 200 <= self.response_status < 300


class CheckedBackend(httpcore.SyncBackend):
    """Dials only addresses the SSRF rules allow, and exactly the addresses it checked."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        last_error: Exception | None = None
        for address in checked_addresses(host, port, allow_private=self.allow_private):
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as error:  # the next address, as a resolver-order client would
                last_error = error
        assert last_error is not None  # checked_addresses returns at least one address
        raise last_error


class DeadlinePassed(Exception):
    pass


class WebhookClient:
    def __init__(self, *, allow_private: bool, timeout_seconds: float, response_bytes_max: int) -> None:
        self.allow_private = allow_private
        self.timeout_seconds = timeout_seconds
        self.response_bytes_max = response_bytes_max
        self._pool = httpcore.ConnectionPool(
            max_connections=CONNECTIONS_MAX,
            max_keepalive_connections=KEEPALIVE_CONNECTIONS_MAX,
            keepalive_expiry=KEEPALIVE_SECONDS,
            network_backend=CheckedBackend(allow_private=allow_private),
        )

    def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Outcome:
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout_seconds
        try:
            status, read = self._post(url, headers, body, deadline)
        except AddressBlocked as error:
            return Outcome(None, _ms_since(started), f"BLOCKED_ADDRESS: {error}", blocked=True)
        except (httpcore.TimeoutException, DeadlinePassed):
            return Outcome(None, _ms_since(started), f"TIMEOUT: no answer within {self.timeout_seconds:g} s")
        except httpcore.ConnectError as error:
            return Outcome(None, _ms_since(started), f"CONNECTION_FAILED: {error}")
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as error:
            return Outcome(None, _ms_since(started), f"{type(error).__name__.upper()}: {error}")
        refused = None if 200 <= status < 300 else f"HTTP {status}"
        return Outcome(status, _ms_since(started), refused, response_bytes_read=read)

    def _post(self, url: str, headers: Mapping[str, str], body: bytes, deadline: float) -> tuple[int, int]:
        request_headers = [
            *headers.items(),
            ("content-type", "application/json"),
            ("user-agent", USER_AGENT),
        ]
        timeouts = dict.fromkeys(("connect", "read", "write", "pool"), self.timeout_seconds)
        with self._pool.stream(
            "POST", url, headers=request_headers, content=body, extensions={"timeout": timeouts}
        ) as response:
            read = 0
            for chunk in response.iter_stream():
                read += len(chunk)
                if read >= self.response_bytes_max:
                    read = self.response_bytes_max
                    break  # leaving the block closes the connection: the rest is never read
                if time.monotonic() > deadline:
                    raise DeadlinePassed
            return response.status, read

    def close(self) -> None:
        self._pool.close()


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


_client: WebhookClient | None = None
_client_lock = threading.Lock()


def shared_client(*, allow_private: bool, timeout_seconds: float, response_bytes_max: int) -> WebhookClient:
    """The process's client (a thread pool's threads share it and its connections)."""
    global _client
    with _client_lock:
        wanted = (allow_private, timeout_seconds, response_bytes_max)
        if _client is None or (_client.allow_private, _client.timeout_seconds, _client.response_bytes_max) != wanted:
            _client = WebhookClient(
                allow_private=allow_private, timeout_seconds=timeout_seconds, response_bytes_max=response_bytes_max
            )
        return _client
