"""`make run` keeps every Procfile process running: one that dies, or whose supervisor is killed, is
started again, and none of the others stops with it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from ops.processes import free_loopback_port, process_tree
from settings import PROJECT_ROOT

READY_SECONDS_MAX = 90
BACK_SECONDS_MAX = 45


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class MakeRun:
    def __init__(self, process: subprocess.Popen[bytes], web_port: int) -> None:
        self.process = process
        self.web_port = web_port

    def find(self, *words: str, supervisor: bool = False) -> list[int]:
        """Live processes of this run whose command line holds every word; supervisors or not."""
        found = []
        for pid in process_tree(self.process.pid)[1:]:
            line = _cmdline(pid)
            if _alive(pid) and all(w in line for w in words) and ("ops.respawn" in line) == supervisor:
                found.append(pid)
        return found

    def healthy(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.web_port}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False


def _eventually(condition: Callable[[], object], what: str, run: MakeRun, seconds: float = BACK_SECONDS_MAX) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert run.process.poll() is None, f"make run exited while waiting for {what}"
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.3)


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[MakeRun]:
    web_port = free_loopback_port()
    env = {
        **os.environ,
        "WEB_PORT": str(web_port),
        "WEB_PROCESSES": "1",
        "FLOWER_PORT": str(free_loopback_port()),
        "VAULTCRAFT_VAR_DIR": str(tmp_path),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ops.run"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    run = MakeRun(process, web_port)
    started: list[int] = []
    try:
        _eventually(run.healthy, "the web answering", run, READY_SECONDS_MAX)
        _eventually(lambda: run.find("worker@%h") and run.find("beat") and run.find("flower"), "every process", run)
        yield run
    finally:
        started = process_tree(process.pid)[1:]
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            for pid in filter(_alive, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def _main(run: MakeRun, word: str) -> list[int]:
    """A process's main one, not one of the pool or server processes it forked."""
    processes = set(run.find(word))
    return [pid for pid in processes if _parent(pid) not in processes]


def test_a_killed_process_or_supervisor_is_restarted_and_stops_nothing_else(make_run: MakeRun) -> None:
    run = make_run
    others = {name: run.find(name) for name in ("beat", "flower")}

    # The web's server process dies: before, honcho stopped every process with it.
    [web] = _main(run, "web.serve")
    os.kill(web, signal.SIGKILL)
    _eventually(lambda: _main(run, "web.serve") not in ([], [web]) and run.healthy(), "the web back", run)

    # The worker's supervisor is SIGKILLed: before, nothing started it again and its worker was orphaned.
    [worker_supervisor] = run.find("worker@%h", supervisor=True)
    old_worker = _main(run, "worker@%h")
    os.kill(worker_supervisor, signal.SIGKILL)
    _eventually(
        lambda: run.find("worker@%h", supervisor=True) not in ([], [worker_supervisor]), "a new supervisor", run
    )
    _eventually(lambda: _main(run, "worker@%h") and _main(run, "worker@%h") != old_worker, "a new worker", run)
    assert not any(map(_alive, old_worker)), "the orphaned worker still runs"

    # Beat dies.
    [beat] = _main(run, "beat")
    os.kill(beat, signal.SIGKILL)
    _eventually(lambda: _main(run, "beat") not in ([], [beat]), "beat back", run)

    assert run.find("flower") == others["flower"], "Flower was restarted: something stopped it"
    assert run.healthy()
