"""A small HTTP/1.1 keep-alive load generator on asyncio: cheap enough per request that on a
2-core machine the client takes little of the CPU the server under test needs. 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"


class Connection:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {self.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_and_headers = await self.reader.readuntil(b"\r\n\r\n")
        lines = status_and_headers.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        payload = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class LoadResult:
    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    accepted_items: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "requests": sum(self.statuses.values()),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "accepted": self.accepted_items,
            "accepted_per_second": self.accepted_items / self.seconds if self.seconds else 0.0,
        }


def _accepted_items(status: int, payload: bytes) -> int:
    if status != 202:
        return 0
    body = json.loads(payload)
    return int(body["accepted"]) if "accepted" in body else 1


async def _client(
    connection: Connection,
    path: str,
    make_body: Callable[[], bytes],
    deadline: float,
    interval: float,
    result: LoadResult,
) -> None:
    next_at = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if interval:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            try:
                status, payload = await connection.post(path, make_body())
            except (OSError, asyncio.IncompleteReadError):
                connection.close()
                result.statuses[0] += 1
                continue
            result.statuses[status] += 1
            result.accepted_items += _accepted_items(status, payload)
    finally:
        connection.close()


def load(
    port: int,
    token: str,
    path: str,
    make_body: Callable[[], bytes],
    *,
    clients: int,
    seconds: float,
    rate_per_second: float | None = None,
) -> LoadResult:
    """`clients` connections posting for `seconds`: as fast as answered, or together at `rate_per_second`."""
    interval = clients / rate_per_second if rate_per_second else 0.0

    async def main() -> LoadResult:
        result = LoadResult(seconds=seconds)
        deadline = time.monotonic() + seconds
        await asyncio.gather(
            *(_client(Connection(port, token), path, make_body, deadline, interval, result) for _ in range(clients))
        )
        return result

    return asyncio.run(main())
