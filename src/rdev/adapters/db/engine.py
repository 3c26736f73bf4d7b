"""Engine set-up; the backend's dialect (:mod:`.dialects`) is chosen here, once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from sqlalchemy import event, make_url, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from rdev.domain.errors import DatabaseUnavailable

from .dialects import Dialect, dialect_for

log = structlog.get_logger(__name__)

#: How long a PostgreSQL connection attempt may take before the request answers 503.
CONNECT_TIMEOUT_SECONDS = 5


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means "the database cannot be reached now", not "this query is wrong".

    Connection refused or lost, the pool exhausted, SQLite locked past its busy timeout or
    its file unopenable: a retry may succeed. A schema or SQL error (SQLite reports
    ``no such table`` as an OperationalError too) is a bug and stays one.
    """
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return not str(exc.orig).startswith(("no such ", "table ", "near "))
    return isinstance(exc, sa_exc.TimeoutError | ConnectionError)


class Database:
    """An engine plus its dialect; hands out read and write transactions."""

    def __init__(self, url: str, *, pool_size: int = 20) -> None:
        self.url = make_url(url)
        self._outage = False
        if self.url.get_backend_name() == "sqlite":
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(
                self.url, connect_args={"timeout": 30}, pool_size=pool_size, max_overflow=0
            )
            _sqlite_pragmas(self.engine)
            self.dialect: Dialect = dialect_for(self.url)
            self._writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
            self._reader = self.engine
            self._single = self._writer
        else:
            # LIFO: the busiest connections stay in use (their prepared statements with
            # them), and the rest can idle out.
            self.engine = create_async_engine(
                self.url,
                connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=False,
                pool_use_lifo=True,
            )
            self.dialect = dialect_for(self.url)
            self._writer = self.engine
            # Under READ COMMITTED every statement takes its own snapshot anyway, so reads
            # lose nothing in autocommit and save the BEGIN and ROLLBACK round trips.
            self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            self._single = self._reader

    @asynccontextmanager
    async def _available(self) -> AsyncIterator[None]:
        """Turn "cannot reach the database" into :class:`DatabaseUnavailable` (a 503).

        Logged once per outage (when the first failure follows a success) and once when it
        ends, not once per request: an outage of a busy server is hundreds of requests.
        """
        try:
            yield
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            if not self._outage:
                self._outage = True
                log.error("database unavailable", error=_first_line(exc, self.url.password))
            raise DatabaseUnavailable(
                "the database is unavailable; nothing was changed, try again shortly"
            ) from None
        if self._outage:
            self._outage = False
            log.info("database reachable again")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed on success, rolled back on error."""
        async with self._available(), self.dialect.write_guard(), self._writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def write_one(self) -> AsyncIterator[AsyncConnection]:
        """A connection for ONE write statement, which is atomic by itself.

        On PostgreSQL it runs in autocommit (no BEGIN and COMMIT round trips); on SQLite it
        is an ordinary write transaction. Never run two statements that must commit
        together on it.
        """
        async with self._available(), self.dialect.write_guard(), self._single.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self._available(), self._reader.connect() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close the listening connection, then the pool."""
        await self.dialect.listener.stop()
        await self.engine.dispose()


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _first_line(exc: BaseException, password: str | None) -> str:
    """The driver's own message, first line only, never with the password in it."""
    orig = getattr(exc, "orig", None) or exc
    line = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return line.replace(password, "***") if password else line
