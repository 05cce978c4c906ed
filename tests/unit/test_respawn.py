"""ops.respawn restarts a command that dies by itself, stops with one that is told to stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ops.respawn
from ops.respawn import Backoff, Supervisor
from ops.runner import supervised_command


def test_a_crashing_command_is_restarted_until_it_succeeds(monkeypatch):
    monkeypatch.setattr(Supervisor, "sleep", lambda _self, _seconds: None)
    with tempfile.TemporaryDirectory() as directory:
        counter = Path(directory) / "runs"
        script = (
            "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = int(p.read_text() or 0) if p.exists() else 0;"
            "p.write_text(str(n + 1)); sys.exit(0 if n >= 2 else 3)"
        )
        code = Supervisor([sys.executable, "-c", script, str(counter)]).run()
        assert code == 0
        assert counter.read_text() == "3"


def test_a_crash_looping_command_is_restarted_forever(monkeypatch):
    """Before, ten deaths in five minutes made the supervisor give up, and honcho stopped the whole
    stack with it. Now it keeps trying: 25 crashes in a row, then the command succeeds."""
    waits: list[float] = []
    monkeypatch.setattr(Supervisor, "sleep", lambda _self, seconds: waits.append(seconds))
    with tempfile.TemporaryDirectory() as directory:
        counter = Path(directory) / "runs"
        script = (
            "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = int(p.read_text() or 0) if p.exists() else 0;"
            "p.write_text(str(n + 1)); sys.exit(0 if n >= 25 else 9)"
        )
        supervisor = Supervisor([sys.executable, "-c", script, str(counter)])
        assert supervisor.run() == 0
    assert supervisor.restarts == 25
    assert max(waits) == ops.respawn.BACKOFF_SECONDS_MAX
    assert waits[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]


def test_backoff_doubles_up_to_its_cap():
    backoff = Backoff(seconds_min=1.0, seconds_max=30.0, healthy_run_seconds=60.0)
    delays = [backoff.after_run(0.5) for _ in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_backoff_starts_again_after_a_healthy_run():
    backoff = Backoff(seconds_min=1.0, seconds_max=30.0, healthy_run_seconds=60.0)
    for _ in range(6):
        backoff.after_run(2.0)
    assert backoff.after_run(59.0) == 30.0  # not yet healthy: still capped
    assert backoff.after_run(60.0) == 1.0  # ran a minute: a new incident
    assert backoff.after_run(3.0) == 2.0


def _has_run(counter: Path, times: int) -> bool:
    return counter.exists() and counter.read_text() == str(times)


def _children(pid: int) -> list[str]:
    """The process's children (Linux), so a test can tell a run in progress from a wait between runs."""
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def test_a_stop_signal_ends_the_wait_before_a_restart():
    """SIGTERM while the supervisor waits out a 30 s backoff stops it at once, nothing restarted."""
    with tempfile.TemporaryDirectory() as directory:
        counter = Path(directory) / "runs"
        script = (
            "import pathlib, sys; p = pathlib.Path(sys.argv[1]);"
            "p.write_text(str(int(p.read_text() or 0) + 1) if p.exists() else '1'); sys.exit(3)"
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "ops.respawn", "--", sys.executable, "-c", script, str(counter)],
            cwd=Path(ops.respawn.__file__).resolve().parents[1],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        # First run, 1 s backoff, second run; once that run's process is gone, a 2 s wait.
        while not (_has_run(counter, 2) and not _children(process.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=1.5) == 3
        assert counter.read_text() == "2"


def test_a_killed_worker_leaves_no_orphaned_pool_behind():
    """A SIGKILLed main process orphans its children; they are killed before the command runs again."""
    with tempfile.TemporaryDirectory() as directory:
        pids = Path(directory) / "pids"
        script = (
            "import os, subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; "
            "time.sleep(60)']); open(sys.argv[1], 'a').write(f'{os.getpid()} {child.pid}\\n'); time.sleep(60)"
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "ops.respawn", "--", sys.executable, "-c", script, str(pids)],
            cwd=Path(ops.respawn.__file__).resolve().parents[1],
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while not pids.exists() or not pids.read_text().endswith("\n"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            main_pid, pool_pid = map(int, pids.read_text().split())
            os.kill(main_pid, signal.SIGKILL)
            while len(pids.read_text().splitlines()) < 2:  # restarted after 1 s
                assert time.monotonic() < deadline + 10
                time.sleep(0.05)
            assert not Path(f"/proc/{pool_pid}").exists()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)


def test_a_stopped_command_is_not_restarted():
    process = subprocess.Popen(
        [sys.executable, "-m", "ops.respawn", "--", sys.executable, "-c", "import time; time.sleep(60)"],
        cwd=Path(ops.respawn.__file__).resolve().parents[1],
        env={**os.environ},
    )
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 128 + signal.SIGTERM


def test_make_run_supervises_every_procfile_process():
    """Any process may crash; each runs under ops.respawn, so none takes the others down."""
    from ops.runner import Runner
    from settings import PROJECT_ROOT

    runner = Runner((PROJECT_ROOT / "Procfile").read_text(), PROJECT_ROOT)
    assert [entry.name for entry in runner.entries] == ["web", "worker", "webhooks", "beat", "flower"]
    for entry in runner.entries:
        assert supervised_command(entry.command) == f"exec python -m ops.respawn -- {entry.command}"
