"""Run a command and start it again whenever it dies by itself: `python -m ops.respawn -- celery ...`.

`make run` runs every Procfile process under this. A Celery worker can die on its own (out of memory,
a kombu bug when Redis vanishes while messages are unacknowledged, an operator's `kill -9`), and a
process that crash-loops must never take the others down with it, nor stay down once the cause is
gone: restarts go on forever, with an exponential backoff capped at BACKOFF_SECONDS_MAX, and the
backoff starts again from BACKOFF_SECONDS_MIN once a run has lasted HEALTHY_RUN_SECONDS.

Signals are passed to the child, and a child stopped by one is not restarted. This process is a child
subreaper (Linux): a worker's pool processes orphaned by a SIGKILLed main process are re-parented here
and are killed before the command starts again, so no stray pool outlives its worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

from ops.processes import process_tree

BACKOFF_SECONDS_MIN, BACKOFF_SECONDS_MAX = 1.0, 30.0
# A run this long counts as healthy: the next crash is a new incident, restarted after the minimum.
HEALTHY_RUN_SECONDS = 60.0
PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Backoff:
    """How long to wait before the next restart, given how long the last run lasted."""

    seconds_min: float = BACKOFF_SECONDS_MIN
    seconds_max: float = BACKOFF_SECONDS_MAX
    healthy_run_seconds: float = HEALTHY_RUN_SECONDS
    current_seconds: float = 0.0

    def after_run(self, ran_seconds: float) -> float:
        if ran_seconds >= self.healthy_run_seconds or self.current_seconds == 0.0:
            self.current_seconds = self.seconds_min
        else:
            self.current_seconds = min(self.current_seconds * 2, self.seconds_max)
        return self.current_seconds


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process instead of to init (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def kill_leftovers() -> None:
    """SIGKILL and reap what remains below this process (a dead worker's orphaned pool)."""
    leftovers = process_tree(os.getpid())[1:]
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in leftovers:  # re-parented here, so ours to reap; a grandchild is reaped by its parent
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


class Supervisor:
    def __init__(self, command: list[str], backoff: Backoff | None = None, reap_orphans: bool = False) -> None:
        self.command = command
        self.backoff = backoff or Backoff()
        # Only as a subreaper: then everything below this process belongs to the command.
        self.reap_orphans = reap_orphans
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.restarts = 0

    def forward(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self) -> int:
        while True:
            started = time.monotonic()
            self.child = subprocess.Popen(self.command)
            code = self.child.wait()
            if self.reap_orphans:
                kill_leftovers()
            if self.stopping or code == 0:
                return code
            delay = self.backoff.after_run(time.monotonic() - started)
            self.restarts += 1
            print(
                f"respawn: {self.command[0]} exited with {code}; restart {self.restarts} in {delay:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            self.sleep(delay)
            if self.stopping:
                return code

    def sleep(self, seconds: float) -> None:
        """Wait before a restart; a stop signal ends the wait early."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))


def main(argv: list[str]) -> int:
    command = argv[1:]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("usage: python -m ops.respawn -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    become_subreaper()
    supervisor = Supervisor(command, reap_orphans=True)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, supervisor.forward)
    code = supervisor.run()
    # A child ended by a signal reports -N; a shell reports that as 128 + N.
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
