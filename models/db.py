"""Engine and session factory. One engine per process; workers dispose it after fork."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from settings import get_settings


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    settings = get_settings()
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_overflow_max,
        pool_pre_ping=True,
        pool_recycle=1800,
    )

    @event.listens_for(engine, "connect")
    def _configure_session(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            # No statement or lock wait may hang a request or a worker forever.
            cursor.execute(f"SET statement_timeout = {int(settings.statement_timeout_ms)}")
            cursor.execute(f"SET lock_timeout = {int(settings.lock_timeout_ms)}")
            cursor.execute(f"SET random_page_cost = {float(settings.db_random_page_cost)}")
        dbapi_connection.commit()

    return engine


@lru_cache(maxsize=1)
def session_factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def dispose_engine() -> None:
    """Drop pooled connections inherited across fork; the child opens its own."""
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)
