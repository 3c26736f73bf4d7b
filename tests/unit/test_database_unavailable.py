"""Which database errors mean "unavailable, retry" (a 503) and which are bugs (a 500)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import exc as sa_exc

from rdev.adapters.db.engine import is_unavailable


def operational(message: str) -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))


@pytest.mark.parametrize(
    "message",
    [
        "database is locked",
        "unable to open database file",
        'connection to server at "127.0.0.1", port 5432 failed: Connection refused',
        "server closed the connection unexpectedly",
    ],
)
def test_an_unreachable_or_locked_database_is_unavailable(message: str) -> None:
    assert is_unavailable(operational(message))


@pytest.mark.parametrize("message", ["no such table: builds", 'near "SELEC": syntax error'])
def test_a_schema_or_sql_error_is_a_bug_not_an_outage(message: str) -> None:
    assert not is_unavailable(operational(message))


def test_a_constraint_violation_or_an_ordinary_error_is_not_an_outage() -> None:
    integrity = sa_exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE failed"))
    assert not is_unavailable(integrity)
    assert not is_unavailable(ValueError("x"))


def test_an_exhausted_pool_or_a_refused_connection_is_unavailable() -> None:
    assert is_unavailable(sa_exc.TimeoutError("QueuePool limit reached"))
    assert is_unavailable(ConnectionRefusedError())
