"""Opening the result database: an engine for the URL (SQLite in WAL mode by default, PostgreSQL for a
plant), brought up to this station's schema by the Alembic migrations shipped in station/migrations.

A database of a station from before the migrations has no version table: it is recognised by its columns
and stamped with the revision it matches, then upgraded. A database made by a newer station (a revision
this one does not know) is refused with one line, never altered. On PostgreSQL several stations may share
one database: the upgrade holds an advisory lock, so two stations starting together do not both migrate.
"""

from __future__ import annotations

import logging
from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, inspect, make_url, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError

from station.core.errors import StationError
from station.core.result_rows import InspectionRow, use_wal

logger = logging.getLogger(__name__)

#: the revision a database of a station from before the migrations is stamped with, by the columns it has
LEGACY = (("uid", "0002_uid"), ("id", "0001_baseline"))
ADVISORY_LOCK = 0x5354_4154  # "STAT": one number for the station's migrations on a shared PostgreSQL


def engine_url(url: str):
    """The SQLAlchemy URL to open: a bare `postgresql://` means psycopg (3), the driver the station installs."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StationError(f"the result database URL is not readable: {exc}") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def migrations() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("station") / "migrations"))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(migrations()).get_current_head()


def open_engine(url: str) -> Engine:
    """An engine for `url` whose database has this station's schema (created or upgraded as needed).
    Raises what SQLAlchemy raises for a database that cannot be reached, StationError for one too new."""
    engine = create_engine(engine_url(url))
    use_wal(engine)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def upgrade(engine: Engine) -> None:
    config = migrations()
    script = ScriptDirectory.from_config(config)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
        current = set(MigrationContext.configure(conn).get_current_heads())
        unknown = [rev for rev in current if _known(script, rev) is None]
        if unknown:
            raise StationError(f"the result database was made by a newer station (schema {', '.join(unknown)}; "
                               f"this station knows up to {script.get_current_head()}): it is left as it is")
        config.attributes["connection"] = conn
        if not current:
            legacy = _legacy_revision(conn)
            if legacy:
                logger.info("result database from before migrations: stamped %s", legacy)
                command.stamp(config, legacy)
        if current != {script.get_current_head()}:
            logger.info("result database: upgrading the schema to %s", script.get_current_head())
            command.upgrade(config, "head")


def _known(script: ScriptDirectory, revision: str):
    try:
        return script.get_revision(revision)
    except CommandError:
        logger.warning("the result database names schema revision %r, which this station does not know", revision)
        return None


def _legacy_revision(conn: Connection) -> str | None:
    """The revision an unversioned database matches: None for an empty one."""
    inspector = inspect(conn)
    if not inspector.has_table(InspectionRow.__tablename__):
        return None
    columns = {c["name"] for c in inspector.get_columns(InspectionRow.__tablename__)}
    for column, revision in LEGACY:
        if column in columns:
            return revision
    raise StationError(f"the result database has an {InspectionRow.__tablename__} table that is not a result log "
                       f"(columns {', '.join(sorted(columns))}): it is left as it is")
