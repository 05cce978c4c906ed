"""The processes under test: the Procfile's web (granian) and worker (Celery) commands, on the
bench's own database and Redis database, plus their resident memory sampled from /proc."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ops.processes import free_loopback_port as free_port
from ops.processes import process_tree
from settings import PROJECT_ROOT

READY_SECONDS_MAX = 60
# The services' own logs go nowhere unless asked for: a log line per intent would flood the table.
SERVICE_OUTPUT = None if os.environ.get("BENCH_SERVICE_LOGS") else subprocess.DEVNULL
RSS_SAMPLE_SECONDS = 0.5
BENCH_WRITE_LIMIT = "1000000 per second"


def procfile_command(name: str) -> list[str]:
    """The Procfile's command for a process type, run with this interpreter's environment."""
    for line in (PROJECT_ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            program, *args = shlex.split(line.split(":", 1)[1])
            return [sys.executable, *args] if program == "python" else [sys.executable, "-m", program, *args]
    raise KeyError(f"no {name} in the Procfile")


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (/proc/<pid>/stat fields 14 and 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _postgres_pids() -> list[int]:
    """Every Postgres server process on the machine: its backends do the web's and workers' SQL."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@dataclass
class MemoryTrace:
    """Per process type: the largest single-process peak (VmHWM) and the tree's total RSS over time."""

    peak_process_kib: dict[str, int] = field(default_factory=dict)
    total_rss_kib: dict[str, list[tuple[float, int]]] = field(default_factory=dict)


class Services:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.memory = MemoryTrace()
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        self.web_port = 0

    def start_worker(self, concurrency: int = 0) -> None:
        """The Procfile's worker; with `concurrency`, that many processes instead of the configured number."""
        command = [*procfile_command("worker"), "--loglevel", "WARNING"]
        command += ["--concurrency", str(concurrency)] if concurrency else []
        command += ["--without-gossip", "--without-mingle", "--hostname", f"bench{os.getpid()}@%h"]
        self.processes["worker"] = subprocess.Popen(
            command, env=self.env, cwd=PROJECT_ROOT, stdout=SERVICE_OUTPUT, stderr=SERVICE_OUTPUT
        )
        from workers.app import app

        deadline = time.monotonic() + READY_SECONDS_MAX
        while time.monotonic() < deadline:
            replies = app.control.ping(timeout=0.5) or []
            if any(f"bench{os.getpid()}@" in key for reply in replies for key in reply):
                return
            if self.processes["worker"].poll() is not None:
                raise RuntimeError("the bench worker exited during start-up")
        raise RuntimeError("the bench worker did not become ready")

    def start_webhooks(self) -> None:
        """The Procfile's webhooks worker (the webhooks queue, a pool of threads)."""
        command = [*procfile_command("webhooks"), "--loglevel", "WARNING"]
        command += ["--without-gossip", "--without-mingle", "--hostname", f"benchhooks{os.getpid()}@%h"]
        self.processes["webhooks"] = subprocess.Popen(
            command, env=self.env, cwd=PROJECT_ROOT, stdout=SERVICE_OUTPUT, stderr=SERVICE_OUTPUT
        )
        self._wait_ping(f"benchhooks{os.getpid()}@", "webhooks")

    def _wait_ping(self, prefix: str, name: str) -> None:
        from workers.app import app

        deadline = time.monotonic() + READY_SECONDS_MAX
        while time.monotonic() < deadline:
            replies = app.control.ping(timeout=0.5) or []
            if any(prefix in key for reply in replies for key in reply):
                return
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"the bench {name} worker exited during start-up")
        raise RuntimeError(f"the bench {name} worker did not become ready")

    def start_web(self) -> None:
        self.web_port = free_port()
        # The bench drives everything with one token; the per-token write limit (an operator setting,
        # 100/s by default) would measure the limiter, not the ledger. The limiter still runs.
        env = {**self.env, "WEB_PORT": str(self.web_port), "VAULTCRAFT_WRITE_LIMIT_PER_TOKEN": BENCH_WRITE_LIMIT}
        self.processes["web"] = subprocess.Popen(
            procfile_command("web"), env=env, cwd=PROJECT_ROOT, stdout=SERVICE_OUTPUT, stderr=SERVICE_OUTPUT
        )
        deadline = time.monotonic() + READY_SECONDS_MAX
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the web process did not become ready")

    def cpu_seconds(self) -> dict[str, float]:
        """CPU used so far by each service's process tree, by Postgres, and by this (load) process.
        Differences over a phase say where each intent's CPU goes on a machine with nothing else on."""
        used = {name: sum(map(_cpu_seconds, process_tree(p.pid))) for name, p in self.processes.items()}
        used["postgres"] = sum(map(_cpu_seconds, _postgres_pids()))
        used["load"] = _cpu_seconds(os.getpid())
        return used

    def start_sampling(self) -> None:
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        started = time.monotonic()
        while not self._sampling.wait(RSS_SAMPLE_SECONDS):
            for name, process in list(self.processes.items()):
                pids = process_tree(process.pid)
                # Only the web/Celery processes count, not a forked helper that is not ours.
                total = sum(_status_kib(pid, "VmRSS") for pid in pids)
                self.memory.total_rss_kib.setdefault(name, []).append((time.monotonic() - started, total))
                peak = max((_status_kib(pid, "VmHWM") for pid in pids), default=0)
                self.memory.peak_process_kib[name] = max(self.memory.peak_process_kib.get(name, 0), peak)

    def stop(self) -> None:
        self._sampling.set()
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
