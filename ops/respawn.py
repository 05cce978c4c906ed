"""Run a command and start it again when it dies by itself: `python -m ops.respawn -- celery ...`.

honcho (under `make run`) stops every process as soon as one exits. A Celery worker can exit on its
own when its broker connection breaks at the wrong moment (a kombu bug when Redis vanishes while
messages are unacknowledged), which would take the whole stack down with it. Money is safe either way
(the messages stay in Redis and the sweep re-enqueues intents); this keeps the processes up too.
Signals are passed to the child, and a child stopped by one is not restarted. Restarts are bounded.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType

RESTARTS_MAX = 10
RESTART_WINDOW_SECONDS = 300.0
BACKOFF_SECONDS_MIN, BACKOFF_SECONDS_MAX = 1.0, 30.0


class Supervisor:
    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.restarts: list[float] = []

    def forward(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def may_restart(self) -> bool:
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_SECONDS]
        return len(self.restarts) < RESTARTS_MAX

    def run(self) -> int:
        backoff = BACKOFF_SECONDS_MIN
        while True:
            self.child = subprocess.Popen(self.command)
            code = self.child.wait()
            if self.stopping or code == 0:
                return code
            if not self.may_restart():
                print(f"respawn: {self.command[0]} keeps dying; giving up with {code}", file=sys.stderr, flush=True)
                return code
            self.restarts.append(time.monotonic())
            print(
                f"respawn: {self.command[0]} exited with {code}; restarting in {backoff:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_SECONDS_MAX)
            if self.stopping:
                return code


def main(argv: list[str]) -> int:
    command = argv[1:]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("usage: python -m ops.respawn -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    supervisor = Supervisor(command)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, supervisor.forward)
    code = supervisor.run()
    # A child ended by a signal reports -N; a shell reports that as 128 + N.
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
