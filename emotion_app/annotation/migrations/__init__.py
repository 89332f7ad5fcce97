"""Versioned schema migrations (Alembic), run by the store each time it opens a database.

Each file in ``versions/`` is one revision, numbered ``0001``, ``0002``, ...: append a
new one, never edit one that has shipped. A database made before Alembic carries a
``schema_version`` table at version 1 instead: it is stamped as revision 0001 (the same
tables) and upgraded from there, in place.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

log = logging.getLogger(__name__)

SCRIPTS = Path(__file__).parent
PRE_ALEMBIC_VERSION = 1  # the last schema_version the store wrote before Alembic
PRE_ALEMBIC_REVISION = "0001"  # the revision holding that schema
# Alembic's `context` and `op` are module globals: one migration at a time in a process
# (stores opened at once by several threads); other processes are held off by the database's write lock.
_one_at_a_time = threading.Lock()


def _config(connection: Connection | None = None) -> Config:
    """Alembic's settings in code: no alembic.ini is needed at run time."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this code knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def _known() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def migrate(connection: Connection) -> None:
    """Bring the schema to the newest revision, inside the caller's open write transaction."""
    config = _config(connection)
    with _one_at_a_time:
        revision = current_revision(connection)
        if revision is None and inspect(connection).has_table("schema_version"):
            version = connection.scalar(text("SELECT MAX(version) FROM schema_version"))
            if version != PRE_ALEMBIC_VERSION:
                raise RuntimeError(f"schema version {version} is unknown to this app; update the app before opening it")
            log.info("adopting a pre-Alembic annotation database (schema_version %d)", version)
            command.stamp(config, PRE_ALEMBIC_REVISION)
        elif revision is not None and revision not in _known():
            raise RuntimeError(f"schema revision {revision} is newer than this app's {head()}; "
                               "update the app before opening it")
        command.upgrade(config, "head")
