"""A webhook receiver on loopback, run as a process of its own (it must not share the GIL of the process
that measures it), for `make chaos` and `make bench`.

    python -m chaos.receiver [--fail-ratio 0.33] [--hang-share 0.1] [--hang-seconds 1.5] [--seed N]

It prints its port on the first line of stdout, then serves until stdin closes or it is terminated.

Every POST is checked with the `standardwebhooks` library against the secret registered for its
path, as a real receiver would (a bad or missing signature is answered 400). What it answers then
depends on the path's first segment:

    /flaky/...   fails `fail_ratio` of the time: mostly 500, a `hang_share` of those by answering
                 only after `hang_seconds` (past the sender's timeout), otherwise 200 at once
    /hang/...    always answers after `hang_seconds`: an endpoint that always times out
    anything else  200 at once

Control, for the harness:

    POST /_secrets   {"<path>": "whsec_...", ...}: the secret each path verifies with
    GET  /_report    {"posts": every POST so far, [[path, webhook-id, received at (Unix s), status,
                     verified, seconds held before answering], ...], "cut_off": POSTs whose body never
                     arrived whole (the sender died mid-request): neither verified nor answered}
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Behaviour:
    fail_ratio: float = 0.0
    hang_share: float = 0.0
    hang_seconds: float = 1.5


class Receiver:
    def __init__(self, behaviour: Behaviour, seed: int) -> None:
        self.behaviour = behaviour
        self.rng = random.Random(seed)
        self.verifiers: dict[str, Webhook] = {}
        self.log: list[tuple[str, str, float, int, bool, float]] = []
        self.lock = threading.Lock()
        self.cut_off_count = 0  # requests whose body never arrived whole

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, float]:
        """(status, seconds to wait before answering) for one POST, recorded."""
        received_at = time.time()
        verifier = self.verifiers.get(path)
        verified = verifier is not None
        try:
            if verifier is not None:
                verifier.verify(body, headers, json_parse=False)  # raises unless a signature matches
        except WebhookVerificationError:
            verified = False
        kind = path.strip("/").split("/")[0]
        status, wait = 200, 0.0
        with self.lock:
            draw, hang_draw = self.rng.random(), self.rng.random()
        if not verified:
            status = 400
        elif kind == "hang":
            wait = self.behaviour.hang_seconds
        elif kind == "flaky" and draw < self.behaviour.fail_ratio:
            status = 500
            if hang_draw < self.behaviour.hang_share:
                wait = self.behaviour.hang_seconds
        with self.lock:
            self.log.append((path, headers.get("webhook-id", ""), received_at, status, verified, wait))
        return status, wait

    def cut_off(self) -> None:
        with self.lock:
            self.cut_off_count += 1

    def report(self) -> dict[str, Any]:
        with self.lock:
            return {"posts": list(self.log), "cut_off": self.cut_off_count}


def serve(receiver: Receiver) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the sender's pooled connections are reused
        # The head and the body go out in two writes: without TCP_NODELAY the body waits for the
        # sender's delayed ACK (40 ms a request on Linux), and that is all a benchmark would measure.
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"ok") -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if body[:1] in (b"{", b"[") else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/_report":
                return self._send(200, json.dumps(receiver.report()).encode())
            self._send(404, b"not found")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path == "/_secrets":
                receiver.verifiers.update({path: Webhook(secret) for path, secret in json.loads(body).items()})
                return self._send(200)
            if len(body) < int(self.headers.get("content-length", 0)):
                # The sender was cut off mid-request (its worker SIGKILLed): nothing to verify or answer.
                receiver.cut_off()
                self.close_connection = True
                return
            status, wait = receiver.answer(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            if wait:
                time.sleep(wait)
            try:
                self._send(status)
            except OSError:  # the sender gave up waiting and closed the connection
                self.close_connection = True

    return Server(("127.0.0.1", 0), Handler)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the listen backlog: a burst of new connections is not refused


@dataclass(frozen=True)
class Receipt:
    path: str
    event_id: str
    at: float  # Unix seconds
    status: int
    verified: bool
    held_seconds: float  # > 0: answered only after the sender's timeout (it never read the answer)


class ReceiverProcess:
    """`python -m chaos.receiver` as a child process, and the harness's side of its control API."""

    def __init__(self, behaviour: Behaviour, seed: int = 1) -> None:
        self.behaviour, self.seed = behaviour, seed
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ReceiverProcess:
        b = self.behaviour
        command = [sys.executable, "-m", "chaos.receiver", f"--fail-ratio={b.fail_ratio}", f"--seed={self.seed}"]
        command += [f"--hang-share={b.hang_share}", f"--hang-seconds={b.hang_seconds}"]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.__exit__()
            raise RuntimeError("the webhook receiver did not start")
        self.port = int(line)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def register(self, secrets: dict[str, str]) -> None:
        """The secret each path (e.g. "/flaky/0") verifies signatures with."""
        request = urllib.request.Request(f"{self.url}/_secrets", data=json.dumps(secrets).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def report(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_report", timeout=60) as answer:
            return dict(json.loads(answer.read()))

    def receipts(self) -> list[Receipt]:
        return [Receipt(*row) for row in self.report()["posts"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fail-ratio", type=float, default=0.0)
    parser.add_argument("--hang-share", type=float, default=0.0)
    parser.add_argument("--hang-seconds", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    server = serve(Receiver(Behaviour(args.fail_ratio, args.hang_share, args.hang_seconds), args.seed))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # until the harness closes our stdin (or ends us)
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
