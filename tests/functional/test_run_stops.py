"""`make run` stops everything it started when its own process is told to stop, not only on Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from ops.processes import free_loopback_port, process_tree
from settings import PROJECT_ROOT

READY_SECONDS_MAX = 90
STOP_SECONDS_MAX = 30


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def _wait_until_healthy(port: int, run: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_SECONDS_MAX
    while time.monotonic() < deadline:
        assert run.poll() is None, "make run exited during start-up"
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError("the web process did not become healthy")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_to_make_run_stops_every_process_it_started(tmp_path, stop_signal):
    """A supervisor, `kill` or `timeout` signals only the top process. Before, SIGTERM killed it at once
    and SIGINT killed honcho, and the web, the worker, beat and Flower kept running without a parent."""
    env = {
        **os.environ,
        "WEB_PORT": str(free_loopback_port()),
        "FLOWER_PORT": str(free_loopback_port()),
        "VAULTCRAFT_VAR_DIR": str(tmp_path),
    }
    run = subprocess.Popen(
        [sys.executable, "-m", "ops.run"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # like a supervisor's child: no terminal signals the group
    )
    started: list[int] = []
    try:
        _wait_until_healthy(int(env["WEB_PORT"]), run)
        started = process_tree(run.pid)[1:]
        assert len(started) >= 5  # honcho, the web, the worker, beat, Flower (and their children)

        run.send_signal(stop_signal)

        assert run.wait(timeout=STOP_SECONDS_MAX) == 0
        deadline = time.monotonic() + STOP_SECONDS_MAX
        while any(map(_alive, started)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in started if _alive(pid)]
    finally:  # a failed stop leaves nothing running
        if run.poll() is None:
            run.kill()
        for pid in filter(_alive, started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
