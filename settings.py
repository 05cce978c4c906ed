"""Runtime settings, read once from the environment.

Only DATABASE_URL and REDIS_URL matter to a deployment (BROKER_URL moves the Celery broker and the
event exchange off Redis, onto RabbitMQ with an `amqp://` URL); everything else has a safe default.
Every bound the system relies on is named here so it can be found and tuned in one place.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent
VAR_DIR = Path(os.environ.get("VAULTCRAFT_VAR_DIR", PROJECT_ROOT / "var"))


class SettingMissing(RuntimeError):
    """A required variable is not set; `name` says which."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is not set: start through `make run` (embedded servers) or set it")
        self.name = name


class SettingInvalid(RuntimeError):
    """A variable is set to something the service refuses to run with; the message says which and why, in one line."""


# HS256 signs with a key; RFC 7518 3.2 asks for one at least as long as the hash (256 bits). A short
# key set by hand ("secret", "changeme") can be found offline from any one token, and with it anyone
# can sign a token for any user.
JWT_SECRET_KEY_BYTES_MIN = 32


def check_jwt_secret_key(key: str) -> None:
    """Refuse a signing key under JWT_SECRET_KEY_BYTES_MIN bytes (UTF-8), naming its length, never the key."""
    size = len(key.encode())
    if size < JWT_SECRET_KEY_BYTES_MIN:
        raise SettingInvalid(
            f"JWT_SECRET_KEY is {size} bytes; it must be at least {JWT_SECRET_KEY_BYTES_MIN}: set a random one"
            " (python -c 'import secrets; print(secrets.token_urlsafe(48))') or unset it to have one generated in var/"
        )


def _jwt_secret_key() -> str:
    """JWT_SECRET_KEY from the environment, else a random key kept in var/ so restarts keep sessions."""
    return os.environ.get("JWT_SECRET_KEY") or _key_kept_in_var("jwt_secret_key", lambda: secrets.token_urlsafe(48))


def _console_secret_key() -> str:
    """VAULTCRAFT_SECRET_KEY from the environment, else a random key kept in var/: it signs the console's
    session cookie and its CSRF tokens, so restarts keep people signed in."""
    return os.environ.get("VAULTCRAFT_SECRET_KEY") or _key_kept_in_var(
        "console_secret_key", lambda: secrets.token_urlsafe(48)
    )


def _webhook_secrets_key() -> str:
    """VAULTCRAFT_WEBHOOK_SECRETS_KEY from the environment (Fernet keys, comma-separated, the first one
    encrypts), else a key kept in var/: webhook signing secrets are stored encrypted with it, so a
    database dump alone does not reveal them."""
    return os.environ.get("VAULTCRAFT_WEBHOOK_SECRETS_KEY") or _key_kept_in_var(
        "webhook_secrets_key", lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    )


def _key_kept_in_var(name: str, generate: Callable[[], str]) -> str:
    """A key generated once into var/<name> (mode 0600) and read from there ever after."""
    key_file = VAR_DIR / name
    if not key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        # Written aside, then linked into place: two processes starting together agree on one key, and
        # neither ever reads a file that exists but is not written yet.
        draft = VAR_DIR / f".{name}.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate())
        try:
            os.link(draft, key_file)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return key_file.read_text().strip()


def sqlalchemy_url(url: str) -> str:
    """Use the psycopg 3 driver whatever form of Postgres URL was given."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


def broker_url_from(environ: Mapping[str, str]) -> str | None:
    """The Celery broker and event exchange: BROKER_URL, else the Redis of REDIS_URL."""
    return environ.get("BROKER_URL") or environ.get("REDIS_URL")


def is_amqp(url: str) -> bool:
    return url.startswith(AMQP_SCHEMES)


def broker_namespace(environ: Mapping[str, str] = os.environ) -> str:
    """A prefix for every queue and exchange name on the broker (empty by default), so several
    stacks can share one RabbitMQ virtual host without taking each other's messages."""
    return environ.get("VAULTCRAFT_BROKER_NAMESPACE", "")


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    jwt_secret_key: str
    broker_url: str = ""
    web_port: int = 8000
    flower_port: int = 5555

    access_token_minutes: int = 15
    refresh_token_days: int = 30

    # Bounds (TIGER_STYLE: put a limit on everything).
    amount_minor_max: int = 10**15
    request_body_bytes_max: int = 1024 * 1024
    page_size_default: int = 50
    page_size_max: int = 500
    wait_seconds_max: int = 30
    db_pool_size: int = 10
    db_pool_overflow_max: int = 10
    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 10_000
    # The planner's price of a random page read, for this application's connections. Postgres's
    # default (4) prices a spinning disk; a ledger's hot set lives in memory or on SSD. With the
    # default, a settlement batch's 1,000-id lookups seq-scanned a transactions table of 100,000
    # rows instead of probing its primary key (issue 3 bench: 5,000 → 6,500 intents/s uniform,
    # 5,500 → 7,400/s onto one hot wallet). 1.1 is the usual setting for SSD.
    db_random_page_cost: float = 1.1
    settle_retries_max: int = 5
    # An intent whose settling alone raises an unexpected error this many times is parked
    # (ledger/settlement/parking.py): still PENDING, passed by every claim, drain and sweep, until an operator acts.
    settle_failures_before_park: int = 3
    settle_batch_size_max: int = 1000
    pending_stale_seconds: int = 30
    sweep_batch_size_max: int = 5000
    # A drain (and a settle task, after its own ids) settles up to this many batches of the oldest
    # PENDING intents (settle_batch_size_max each), then hands the rest to a new task: a backlog is
    # settled 1,000 at a time, messages behind it find their intents final (cheap no-ops), and no
    # one task runs long enough to near its time limit.
    settle_drain_batches_max: int = 10
    # A drain woken by an API intent starts this long after the first intent that woke it, so the
    # intents of that window settle together: at 600 intents/s, about 30 per task instead of a few,
    # and a task's fixed cost (the broker, the pool, 6 statements) is paid once for all of them.
    # Latency pays at most this much; `make bench` reports the p99 with it. 100 ms settled 11% more in
    # short A/B runs, but not in a full `make bench` (460/446/s against 508/516/s), and the p99 at half
    # load went from 65-71 ms to 115 ms: kept at 50.
    settle_gather_ms: int = 50
    # Items in one POST /transactions/batch request.
    bulk_transfers_max: int = 1000
    # An Idempotency-Key replays its request for at least this long (Stripe keeps keys 24 h), then
    # beat purges it (within `idempotency_purge_seconds`) and the same key makes a new request.
    idempotency_key_ttl_hours: int = 24
    # Keys one purge deletes per transaction, and transactions per purge task.
    idempotency_purge_batch_size_max: int = 5000
    idempotency_purge_batches_max: int = 20
    # Holds: a hold that expires within this many seconds of becoming HELD gets a task with that ETA
    # (a longer ETA would outlive the broker's visibility timeout, 300 s, and be redelivered again and
    # again); every other hold, and any whose task was lost, is expired by the sweeper (beat, every
    # `hold_sweep_seconds`), up to `hold_sweep_batch_size_max` per transaction. Holds due at the same
    # instant share their ETA tasks, up to `hold_sweep_batch_size_max` holds each (one transaction).
    hold_expiry_eta_seconds_max: int = 240
    hold_sweep_batch_size_max: int = 500
    hold_sweep_batches_max: int = 20
    # Fraud review: a transfer IN_REVIEW this long undecided fails REVIEW_EXPIRED (beat's sweeper,
    # up to `review_sweep_batch_size_max` per transaction).
    review_window_seconds: int = 72 * 3600
    review_sweep_batch_size_max: int = 500

    # Webhooks (notify/). Secrets are encrypted at rest with `webhook_secrets_key`.
    webhook_secrets_key: str = ""
    # True lets endpoints reach loopback, private and link-local addresses over plain http (dev, tests).
    webhook_allow_private: bool = False
    # One attempt: connect, send and read the answer within this many seconds (the contract: 10 s).
    webhook_timeout_seconds: float = 10.0
    # At most this much of an endpoint's answer is read; the rest is left unread.
    webhook_response_bytes_max: int = 64 * 1024
    # Retries: exponential from the base, capped, with jitter, until the give-up window from the
    # event's delivery creation has passed (then FAILED). Svix and Stripe retry for days; 24 h here.
    webhook_retry_base_seconds: float = 5.0
    webhook_retry_max_seconds: float = 3600.0
    webhook_give_up_seconds: float = 24 * 3600.0
    # An endpoint with nothing but failures for this long is DISABLED (event `webhook.disabled`).
    webhook_disable_after_seconds: float = 3 * 24 * 3600.0
    # After a rotation, deliveries carry a signature under the old secret too for this long.
    webhook_secret_overlap_seconds: float = 24 * 3600.0
    # Attempts in flight per endpoint: a slow or dead endpoint holds at most this many delivery threads.
    webhook_endpoint_in_flight_max: int = 2
    # The sweeper re-enqueues PENDING deliveries due for longer than this (a lost message, a killed
    # worker whose lease ran out, a broker outage), at most a batch per run.
    webhook_sweep_stale_seconds: float = 10.0
    webhook_sweep_batch_size_max: int = 1000
    # Endpoints per organisation, and event types per endpoint.
    webhook_endpoints_per_organization_max: int = 20

    # The console (web/console/): its cookie's signing key, and how long a login lasts there. A login
    # ends after `console_idle_minutes` without a request, and `console_session_hours` after it
    # started, whichever comes first; logging out ends it at once, on the server.
    console_secret_key: str = ""
    console_idle_minutes: int = 30
    console_session_hours: int = 12
    # Rows per console list page, and where the console links into Flower (empty: the request's host
    # on `flower_port`).
    console_page_size: int = 50
    flower_url: str = ""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        database_url = os.environ["DATABASE_URL"]
        redis_url = os.environ["REDIS_URL"]
    except KeyError as missing:
        raise SettingMissing(missing.args[0]) from None
    return Settings(
        database_url=sqlalchemy_url(database_url),
        redis_url=redis_url,
        broker_url=broker_url_from(os.environ) or redis_url,
        jwt_secret_key=_jwt_secret_key(),
        web_port=int(os.environ.get("WEB_PORT", "8000")),
        flower_port=int(os.environ.get("FLOWER_PORT", "5555")),
        pending_stale_seconds=int(os.environ.get("VAULTCRAFT_PENDING_STALE_SECONDS", Settings.pending_stale_seconds)),
        review_window_seconds=int(os.environ.get("VAULTCRAFT_REVIEW_WINDOW_SECONDS", Settings.review_window_seconds)),
        settle_drain_batches_max=int(
            os.environ.get("VAULTCRAFT_SETTLE_DRAIN_BATCHES_MAX", Settings.settle_drain_batches_max)
        ),
        settle_gather_ms=int(os.environ.get("VAULTCRAFT_SETTLE_GATHER_MS", Settings.settle_gather_ms)),
        idempotency_key_ttl_hours=int(
            os.environ.get("VAULTCRAFT_IDEMPOTENCY_KEY_TTL_HOURS", Settings.idempotency_key_ttl_hours)
        ),
        webhook_secrets_key=_webhook_secrets_key(),
        console_secret_key=_console_secret_key(),
        console_idle_minutes=int(os.environ.get("VAULTCRAFT_CONSOLE_IDLE_MINUTES", Settings.console_idle_minutes)),
        console_session_hours=int(os.environ.get("VAULTCRAFT_CONSOLE_SESSION_HOURS", Settings.console_session_hours)),
        flower_url=os.environ.get("VAULTCRAFT_FLOWER_URL", ""),
        webhook_allow_private=os.environ.get("VAULTCRAFT_WEBHOOK_ALLOW_PRIVATE", "").lower() in ("1", "true", "yes"),
        **_webhook_windows(),  # type: ignore[arg-type]
    )


# Webhook timings a deployment (or a test that cannot wait days) may change, by environment variable.
_WEBHOOK_WINDOW_VARIABLES = {
    "webhook_timeout_seconds": "VAULTCRAFT_WEBHOOK_TIMEOUT_SECONDS",
    "webhook_retry_base_seconds": "VAULTCRAFT_WEBHOOK_RETRY_BASE_SECONDS",
    "webhook_retry_max_seconds": "VAULTCRAFT_WEBHOOK_RETRY_MAX_SECONDS",
    "webhook_give_up_seconds": "VAULTCRAFT_WEBHOOK_GIVE_UP_SECONDS",
    "webhook_disable_after_seconds": "VAULTCRAFT_WEBHOOK_DISABLE_AFTER_SECONDS",
    "webhook_secret_overlap_seconds": "VAULTCRAFT_WEBHOOK_SECRET_OVERLAP_SECONDS",
    "webhook_sweep_stale_seconds": "VAULTCRAFT_WEBHOOK_SWEEP_STALE_SECONDS",
}


def _webhook_windows() -> dict[str, float]:
    return {field: float(os.environ[name]) for field, name in _WEBHOOK_WINDOW_VARIABLES.items() if name in os.environ}
