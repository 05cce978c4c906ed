"""Run every Procfile process in the foreground, keep each one running, stop them all on request.

honcho (which `make run` used before) follows foreman: when one process exits, it stops all the
others. So a crash-looping worker, or a killed supervisor, took the API, beat and Flower down with it.
Here each process runs under ops.respawn (which restarts its command with a capped backoff), and a
process that exits anyway (its ops.respawn was killed, or gave up on a clean exit) is started again by
this runner after the same kind of backoff. Only SIGINT or SIGTERM to this process stops everything.
honcho still parses the Procfile and prints the prefixed, coloured lines.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from honcho.colour import get_colours
from honcho.environ import parse_procfile
from honcho.printer import Message, Printer

from ops.respawn import Backoff

# How long processes get to stop after SIGTERM before the rest of their group is SIGKILLed.
STOP_GRACE_SECONDS = 10.0
POLL_SECONDS = 0.2
SYSTEM = "system"


def supervised_command(command: str) -> str:
    """The Procfile command under ops.respawn; `exec` so that the shell does not stay in between."""
    return f"exec python -m ops.respawn -- {command}"


@dataclass
class Entry:
    name: str
    command: str
    colour: str | None
    backoff: Backoff = field(default_factory=Backoff)
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None


class Runner:
    def __init__(self, procfile_text: str, cwd: Path, output: TextIO = sys.stdout) -> None:
        colours = get_colours()
        processes = parse_procfile(procfile_text).processes
        self.entries = [Entry(name, command, next(colours)) for name, command in processes.items()]
        self.cwd = cwd
        self.printer = Printer(output, width=max([len(SYSTEM), *(len(e.name) for e in self.entries)]))
        self.print_lock = threading.Lock()
        self.stopping = threading.Event()

    def say(self, name: str, text: bytes | str, colour: str | None = None) -> None:
        message = Message(type="line", data=text, time=datetime.datetime.now(), name=name, colour=colour)
        with self.print_lock:
            self.printer.write(message)

    def start(self, entry: Entry) -> None:
        entry.popen = subprocess.Popen(
            ["sh", "-c", supervised_command(entry.command)],
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own: stopped as one, and no terminal signal reaches it
        )
        entry.started_at, entry.restart_at = time.monotonic(), None
        self.say(SYSTEM, f"{entry.name} started (pid={entry.popen.pid})\n")
        threading.Thread(target=self.relay, args=(entry, entry.popen), daemon=True).start()

    def relay(self, entry: Entry, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdout is not None
        for line in iter(popen.stdout.readline, b""):
            self.say(entry.name, line, entry.colour)
        popen.stdout.close()

    def check(self, entry: Entry) -> None:
        """Schedule a restart for a process that exited, start one whose time has come."""
        now = time.monotonic()
        if entry.popen is not None and entry.restart_at is None and entry.popen.poll() is not None:
            # Whatever it left in its group (a worker's pool, once its supervisor was killed) goes too.
            signal_group(entry.popen.pid, signal.SIGKILL)
            delay = entry.backoff.after_run(now - entry.started_at)
            entry.restart_at = now + delay
            self.say(SYSTEM, f"{entry.name} exited (rc={entry.popen.returncode}); restarting in {delay:.0f} s\n")
        if entry.restart_at is not None and now >= entry.restart_at:
            self.start(entry)

    def run(self) -> int:
        """Until SIGINT or SIGTERM; then stop every process and answer 0."""

        def stop(signum: int, _frame: object) -> None:
            self.say(SYSTEM, f"{signal.Signals(signum).name} received, stopping\n")
            self.stopping.set()

        previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            for entry in self.entries:
                self.start(entry)
            while not self.stopping.wait(POLL_SECONDS):
                for entry in self.entries:
                    self.check(entry)
        finally:
            self.stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 0

    def stop_all(self) -> None:
        """SIGTERM every group at once, wait for them, SIGKILL what is left after the grace period."""
        running = [e.popen for e in self.entries if e.popen is not None]
        for popen in running:
            signal_group(popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for popen in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
            signal_group(popen.pid, signal.SIGKILL)
            popen.wait()


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
