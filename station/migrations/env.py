"""Alembic's environment for the result log: always run programmatically by station.core.database, on the
connection (and inside the transaction) that it opened; no alembic.ini, no logging setup of its own."""

from alembic import context

from station.core.result_rows import Base

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic upgrade` from a shell is not how the station migrates
    raise RuntimeError("the station's migrations run from station.core.database.open_engine, not from a shell")

context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")  # SQLite alters tables by copying them
with context.begin_transaction():
    context.run_migrations()
