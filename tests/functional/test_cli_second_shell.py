"""`vaultcraft` in a second shell while `make run` runs on embedded servers, with nothing exported.

The commands find the servers `make run` started from var/; with none running and nothing set they
answer one clear line, not a traceback; the embedded Redis comes back on the port it had.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ops.processes import free_loopback_port
from settings import PROJECT_ROOT

READY_SECONDS_MAX = 120
STOP_SECONDS_MAX = 60
COMMAND_SECONDS_MAX = 60
VAULTCRAFT = str(Path(sys.executable).parent / "vaultcraft")


def _without_servers(var_dir: Path, **extra: str) -> dict[str, str]:
    """A fresh shell's environment: no DATABASE_URL or REDIS_URL, the given var/ directory."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {**env, "VAULTCRAFT_VAR_DIR": str(var_dir), **extra}


def _vaultcraft(var_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VAULTCRAFT, *args],
        cwd=PROJECT_ROOT,
        env=_without_servers(var_dir),
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS_MAX,
    )


def _stop(run: subprocess.Popen[bytes]) -> None:
    if run.poll() is None:
        run.send_signal(signal.SIGTERM)
        try:
            run.wait(timeout=STOP_SECONDS_MAX)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


@pytest.fixture(scope="module")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`make run` with embedded servers, in a var/ of its own; yields that directory."""
    var_dir = tmp_path_factory.mktemp("var")
    web_port = free_loopback_port()
    env = _without_servers(var_dir, WEB_PORT=str(web_port), FLOWER_PORT=str(free_loopback_port()))
    run = subprocess.Popen(
        [sys.executable, "-m", "ops.run"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + READY_SECONDS_MAX
        while True:
            assert run.poll() is None, "make run exited during start-up"
            assert time.monotonic() < deadline, "make run did not become healthy"
            try:
                if requests.get(f"http://127.0.0.1:{web_port}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        yield var_dir
    finally:
        _stop(run)


@pytest.mark.parametrize(
    "args, printed",
    [
        (["migrate"], "database is at the latest migration"),
        (["create-operator", "--email", "ops@example.com", "--password", "a long secret"], "operator ops@example.com"),
        (["settle"], "settled batch"),
        (["reconcile"], "CLEAN"),
    ],
)
def test_every_command_finds_the_servers_make_run_started(make_run, args, printed):
    done = _vaultcraft(make_run, *args)
    assert done.returncode == 0, done.stderr
    assert printed in done.stdout


def test_with_nothing_running_and_nothing_set_the_error_is_one_clear_line(tmp_path):
    for args in (
        ["migrate"],
        ["settle"],
        ["reconcile"],
        ["create-operator", "--email", "o@x.io", "--password", "x" * 12],
    ):
        done = _vaultcraft(tmp_path, *args)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "DATABASE_URL" in lines[0] and "make run" in lines[0]


def test_a_server_that_does_not_answer_is_one_line_too(tmp_path):
    dead = free_loopback_port()
    done = subprocess.run(
        [VAULTCRAFT, "reconcile"],
        cwd=PROJECT_ROOT,
        env=_without_servers(
            tmp_path, DATABASE_URL=f"postgresql://nobody@127.0.0.1:{dead}/x", REDIS_URL=f"redis://127.0.0.1:{dead}/0"
        ),
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS_MAX,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "does not answer" in done.stderr, done.stderr


def _embedded_redis(var_dir: Path, action: str) -> str:
    """Run `devservers.<action>()` in a process of its own, as `make services` / `make stop-services` do."""
    return subprocess.run(
        [sys.executable, "-c", f"from ops import devservers; print(devservers.{action}())"],
        cwd=PROJECT_ROOT,
        env=_without_servers(var_dir),
        capture_output=True,
        text=True,
        check=True,
        timeout=COMMAND_SECONDS_MAX,
    ).stdout.strip()


def test_the_embedded_redis_keeps_its_port_across_a_restart(tmp_path):
    """Exports printed by `make services` stay right after `make stop-services` and a new start."""
    first = _embedded_redis(tmp_path, "ensure_redis")
    try:
        _embedded_redis(tmp_path, "stop_redis")
        assert _embedded_redis(tmp_path, "ensure_redis") == first
    finally:
        _embedded_redis(tmp_path, "stop_redis")
