"""DDL helpers for migrations: the application role and its privileges."""

from __future__ import annotations

from alembic import context, op
from psycopg import sql


def app_role() -> str:
    return str(context.config.attributes.get("app_role", "kassa_app"))


def execute_raw(statement: str) -> None:
    """Run DDL through the driver as-is (no bind-parameter parsing), e.g. vendored SQL."""
    raw = op.get_bind().connection.driver_connection
    assert raw is not None
    raw.execute(statement.encode())


def ensure_app_role() -> None:
    """Create the login role the application uses: owns nothing, never bypasses RLS."""
    role = app_role()
    password = context.config.attributes.get("app_password")
    raw = op.get_bind().connection.driver_connection
    assert raw is not None
    row = raw.execute(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    if row is None:
        # Roles are cluster-wide: migrations of two databases on one server (parallel test
        # workers, two installations) may both create it; the loser just moves on.
        raw.execute(
            sql.SQL(
                "DO $$ BEGIN CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;"
                " EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            ).format(sql.Identifier(role))
        )
    elif row[0] or row[1]:
        raise RuntimeError(f"role {role!r} is superuser or BYPASSRLS; the app role must be neither")
    if password:
        raw.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
        )


def grant_app_role() -> None:
    """Read/write on every table (present and future); the migration history is read-only."""
    role = sql.Identifier(app_role())
    raw = op.get_bind().connection.driver_connection
    assert raw is not None
    dbname = raw.execute("SELECT current_database()").fetchone()
    assert dbname is not None
    for statement in (
        "GRANT CONNECT ON DATABASE {db} TO {role}",
        "GRANT USAGE ON SCHEMA public TO {role}",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role}",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}",
        "REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {role}",
    ):
        raw.execute(sql.SQL(statement).format(role=role, db=sql.Identifier(dbname[0])))
