"""Alembic environment: always run through ``kassa migrate`` (kassa.db.migrate)."""

from __future__ import annotations

from alembic import context

from kassa.db.models import metadata

config = context.config
connection = config.attributes["connection"]


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """procrastinate's tables come from its own schema files, not from our models."""
    return not (type_ == "table" and str(name).startswith("procrastinate"))


context.configure(
    connection=connection,
    target_metadata=metadata,
    transaction_per_migration=True,
    include_name=include_name,
)
with context.begin_transaction():
    context.run_migrations()
