"""The annotation database: an SQLite file in the data folder by default, or the server
``DATABASE_URL`` names (PostgreSQL, e.g. ``postgresql+psycopg://user:pw@host/db``), with
the same transaction semantics on both.

A write transaction takes one database-wide write lock before anything else (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock), so concurrent
writers, in any process or on any replica, queue instead of failing or interleaving, and
every check-then-write inside one is race-free. A writer that dies mid-transaction
releases the lock with it (the file lock with its process, the advisory lock with its
connection) and its changes are rolled back. A read transaction never waits for writers
and sees one consistent state (SQLite's WAL; PostgreSQL's REPEATABLE READ).
"""
from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.pool import NullPool

DATABASE_URL = "DATABASE_URL"  # the environment variable naming a database server
DB_NAME = "annotations.sqlite3"  # the SQLite file in the data folder when none is named
BUSY_SECONDS = 30  # how long a writer waits for the write lock before it gives up
LOCKED_RETRY_SECONDS = 0.01  # between tries of a statement SQLite refused without waiting
STUCK_SECONDS = 120  # PostgreSQL ends a transaction left idle this long (a hung writer holding the lock)
WRITE_LOCK = 0x616E6E6F  # the advisory lock every writer to one PostgreSQL database takes ("anno")
WRITE = "annotation_write"  # the execution option that makes SQLite's BEGIN take the write lock
SQLITE_PRAGMAS = (f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}", "PRAGMA journal_mode=WAL",
                  "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON")


class StoreUnavailable(OSError):
    """The database cannot be opened or reached: a damaged file, a full disk, a server
    that is down, a write lock held too long. An OSError, so callers that already report
    unreadable files report this too instead of crashing."""


def database_url(root: Path) -> str:
    return os.environ.get(DATABASE_URL) or f"sqlite:///{root / DB_NAME}"


def open_engine(url: str) -> Engine:
    """An engine for ``url``; nothing is opened until the first transaction."""
    if url.startswith("sqlite"):
        # A fresh connection per transaction, as SQLite connections are cheap: nothing is held
        # open between requests, and Gradio's worker threads never share one.
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": BUSY_SECONDS})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    options = f"-c lock_timeout={BUSY_SECONDS}s -c idle_in_transaction_session_timeout={STUCK_SECONDS}s"
    return create_engine(url, pool_pre_ping=True, connect_args={"options": options})


def _sqlite_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # the driver begins nothing on its own: _sqlite_begin does
    for pragma in SQLITE_PRAGMAS:
        _execute_waiting(dbapi_connection, pragma)


def _execute_waiting(dbapi_connection, statement: str) -> None:
    """Run ``statement``, waiting up to BUSY_SECONDS while the file is locked. Where several
    connections switch a new file to WAL at once, SQLite answers "database is locked" at
    once, without its busy handler (measured: 19 of 2400 openings, 8 threads at a time), so
    this waits as ``busy_timeout`` would."""
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            dbapi_connection.execute(statement)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(LOCKED_RETRY_SECONDS)


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")


def where(engine: Engine) -> str:
    """The database as a message names it: the file, or the server URL without its password."""
    url = engine.url
    return url.database if url.get_backend_name() == "sqlite" else url.render_as_string(hide_password=True)


@contextmanager
def _unavailable_reported(engine: Engine):
    """Database failures become StoreUnavailable naming the database; a violated constraint
    or a bad query (bugs, not outages) stays as it is."""
    try:
        yield
    except (IntegrityError, ProgrammingError):
        raise
    except DBAPIError as exc:
        raise StoreUnavailable(f"{where(engine)}: {exc.orig}") from exc


@contextmanager
def write_transaction(engine: Engine):
    """A write transaction holding the database's write lock: everything commits or nothing."""
    with _unavailable_reported(engine), engine.connect() as conn:
        conn.execution_options(**{WRITE: True})
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(WRITE_LOCK)))
            yield conn


@contextmanager
def read_transaction(engine: Engine):
    """A read transaction: several queries see one consistent state."""
    with _unavailable_reported(engine), engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn
