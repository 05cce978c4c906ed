"""Flower answers on its port and lists the running worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import requests

from ops.processes import free_loopback_port

FLOWER_READY_SECONDS_MAX = 60


def wait_for_a_task_seen_by_flower(port: int) -> bool:
    from tasks.settlement import drain_pending

    deadline = time.monotonic() + FLOWER_READY_SECONDS_MAX
    while time.monotonic() < deadline:
        sent = drain_pending.apply_async()
        time.sleep(1)
        tasks = requests.get(f"http://127.0.0.1:{port}/api/tasks", timeout=10).json()
        if sent.id in tasks:
            return True
    return False


def test_flower_lists_the_worker_and_its_tasks(worker):
    port = free_loopback_port()
    command = [
        sys.executable,
        "-m",
        "celery",
        "--app",
        "workers.app",
        "flower",
        f"--port={port}",
        "--address=127.0.0.1",
    ]
    flower = subprocess.Popen(
        command,
        env={**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        workers: dict = {}
        deadline = time.monotonic() + FLOWER_READY_SECONDS_MAX
        while time.monotonic() < deadline and not any(name.startswith("settler@") for name in workers):
            try:
                response = requests.get(f"http://127.0.0.1:{port}/api/workers?refresh=1", timeout=10)
                if response.status_code == 200:
                    workers = response.json()
            except requests.RequestException:
                pass
            time.sleep(0.5)
        assert any(name.startswith("settler@") for name in workers), workers
        assert requests.get(f"http://127.0.0.1:{port}/workers", timeout=10).status_code == 200
        # Workers send task events only while a monitor asks; Flower asks, so it sees the tasks.
        assert wait_for_a_task_seen_by_flower(port), "Flower saw no task"
    finally:
        flower.terminate()
        flower.wait(timeout=20)


def _flower(port: int, address: str, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "ops.flower", f"--port={port}", f"--address={address}"],
        env={**env, **extra_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_flower_beyond_loopback_without_a_password_refuses_to_start():
    flower = _flower(free_loopback_port(), "0.0.0.0", {})
    try:
        code = flower.wait(timeout=30)
    finally:
        if flower.poll() is None:
            flower.kill()
            flower.wait()
    assert code != 0
    assert flower.stderr is not None
    assert b"FLOWER_BASIC_AUTH" in flower.stderr.read()


def test_flower_beyond_loopback_asks_for_its_password(worker):
    port = free_loopback_port()
    flower = _flower(port, "0.0.0.0", {"FLOWER_BASIC_AUTH": "ops:a-long-secret"})
    try:
        url = f"http://127.0.0.1:{port}/workers"
        deadline = time.monotonic() + FLOWER_READY_SECONDS_MAX
        anonymous = None
        while time.monotonic() < deadline and flower.poll() is None:
            try:
                anonymous = requests.get(url, timeout=10)
                break
            except requests.RequestException:
                time.sleep(0.3)
        assert anonymous is not None, "Flower did not start"
        assert anonymous.status_code == 401
        assert requests.get(f"http://127.0.0.1:{port}/api/workers", timeout=10).status_code == 401
        assert requests.get(url, auth=("ops", "wrong"), timeout=10).status_code == 401
        assert requests.get(url, auth=("ops", "a-long-secret"), timeout=10).status_code == 200
    finally:
        flower.terminate()
        flower.wait(timeout=20)
