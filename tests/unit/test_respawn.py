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
from ops.respawn import Supervisor


def test_a_crashing_command_is_restarted_until_it_succeeds(monkeypatch):
    monkeypatch.setattr(ops.respawn.time, "sleep", lambda _seconds: None)
    with tempfile.TemporaryDirectory() as directory:
        counter = Path(directory) / "runs"
        script = (
            "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = int(p.read_text() or 0) if p.exists() else 0;"
            "p.write_text(str(n + 1)); sys.exit(0 if n >= 2 else 3)"
        )
        code = Supervisor([sys.executable, "-c", script, str(counter)]).run()
        assert code == 0
        assert counter.read_text() == "3"


def test_restarts_are_bounded(monkeypatch):
    monkeypatch.setattr(ops.respawn.time, "sleep", lambda _seconds: None)
    supervisor = Supervisor([sys.executable, "-c", "raise SystemExit(5)"])
    assert supervisor.run() == 5
    assert len(supervisor.restarts) == ops.respawn.RESTARTS_MAX


def test_a_stopped_command_is_not_restarted():
    process = subprocess.Popen(
        [sys.executable, "-m", "ops.respawn", "--", sys.executable, "-c", "import time; time.sleep(60)"],
        cwd=Path(ops.respawn.__file__).resolve().parents[1],
        env={**os.environ},
    )
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 128 + signal.SIGTERM


def test_make_run_supervises_worker_and_beat_only():
    from ops.run import supervised_procfile
    from settings import PROJECT_ROOT

    procfile = (PROJECT_ROOT / "Procfile").read_text()
    supervised = dict(line.split(": ", 1) for line in supervised_procfile(procfile).splitlines())
    original = dict(line.split(": ", 1) for line in procfile.splitlines() if line.strip())
    for name in ("worker", "beat"):
        assert supervised[name] == f"python -m ops.respawn -- {original[name]}"
    for name in ("web", "flower"):
        assert supervised[name] == original[name]
