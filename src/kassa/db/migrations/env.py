"""Alembic environment: always run through ``kassa migrate`` (kassa.db.migrate)."""

from __future__ import annotations

from alembic import context

from kassa.db.models import metadata

config = context.config
connection = config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
