"""The test run's own database and Redis database, on real servers.

With DATABASE_URL / REDIS_URL unset the embedded servers are used (started if needed, stopped
after the run if this run started them). Each run creates a fresh database, migrated with Alembic,
and claims a free Redis database number, so two runs on one machine never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import psycopg
import redis
from sqlalchemy.engine import make_url

from ops import devservers

REDIS_DATABASES = range(1, 16)
REDIS_CLAIM_KEY = "vaultcraft:test-run"
REDIS_CLAIM_SECONDS = 3 * 3600


@dataclass
class TestEnvironment:
    database_url: str
    admin_url: str
    database_name: str
    redis_url: str
    started_postgres: bool
    started_redis: bool


def _admin_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


def _claim_redis_database(base_url: str, run_id: str) -> str:
    for number in REDIS_DATABASES:
        url = make_url(base_url.replace("redis://", "postgresql://", 1)).set(database=str(number))
        candidate = url.render_as_string(hide_password=False).replace("postgresql://", "redis://", 1)
        client = redis.Redis.from_url(candidate)
        if client.set(REDIS_CLAIM_KEY, run_id, nx=True, ex=REDIS_CLAIM_SECONDS):
            for key in client.scan_iter(match="*"):
                if key != REDIS_CLAIM_KEY.encode():
                    client.delete(key)
            return candidate
    raise RuntimeError("no free Redis database for this test run")


def prepare() -> TestEnvironment:
    started_postgres = not os.environ.get("DATABASE_URL") and not devservers.postgres_running()
    started_redis = not os.environ.get("REDIS_URL") and not devservers.redis_running()
    urls = devservers.ensure_services()
    run_id = uuid.uuid4().hex[:10]
    database_name = f"vaultcraft_test_{run_id}"
    admin_url = _admin_url(urls["DATABASE_URL"])
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database_name}"')
    database_url = make_url(urls["DATABASE_URL"]).set(database=database_name).render_as_string(hide_password=False)
    return TestEnvironment(
        database_url=database_url,
        admin_url=admin_url,
        database_name=database_name,
        redis_url=_claim_redis_database(urls["REDIS_URL"], run_id),
        started_postgres=started_postgres,
        started_redis=started_redis,
    )


def tear_down(env: TestEnvironment) -> None:
    client = redis.Redis.from_url(env.redis_url)
    client.flushdb()
    with psycopg.connect(env.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{env.database_name}" WITH (FORCE)')
    if env.started_redis:
        devservers.stop_redis()
    if env.started_postgres:
        devservers.stop_postgres()
