"""Tenancy is enforced by PostgreSQL itself (RLS, forced, non-owner role), not only by code."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from kassa.db.models import metadata
from kassa.runtime import Runtime
from tests.conftest import Tenant, add_member, api_key

PLATFORM_TABLES = {
    "organizations",
    "users",
    "refresh_tokens",
    "signing_keys",
    "user_tokens",
    "alembic_version",
}


def _raw_select(rt: Runtime, table: str, org_id: str | None) -> list[str]:
    with rt.db.engine.connect() as conn, conn.begin():
        if org_id is not None:
            conn.execute(text("SELECT set_config('app.org_id', :o, true)"), {"o": org_id})
        return [r[0] for r in conn.execute(text(f"SELECT org_id FROM {table}"))]  # noqa: S608


def test_raw_select_without_where_sees_only_the_current_org(
    client: TestClient, rt: Runtime, tenant: Tenant, other_tenant: Tenant
) -> None:
    api_key(client, tenant)
    api_key(client, other_tenant)
    add_member(client, other_tenant, "staff")
    for table in ("api_keys", "memberships"):
        rows = _raw_select(rt, table, tenant.org_id)
        assert rows and set(rows) == {tenant.org_id}, table
        assert _raw_select(rt, table, None) == [], table


def test_app_role_cannot_write_into_another_org(
    rt: Runtime, tenant: Tenant, other_tenant: Tenant
) -> None:
    with rt.db.engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT set_config('app.org_id', :o, true)"), {"o": tenant.org_id})
        with pytest.raises(Exception, match="row-level security"):
            conn.execute(
                text(
                    "INSERT INTO idempotency_keys (org_id, key, fingerprint, status, headers, body,"
                    " created_at, expires_at) VALUES (:o, 'k', 'f', 200, '{}', '', now(), now())"
                ),
                {"o": other_tenant.org_id},
            )


def test_app_role_owns_nothing_and_cannot_bypass_rls(rt: Runtime) -> None:
    with rt.db.engine.connect() as conn:
        role = conn.execute(
            text(
                "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
            )
        ).one()
        assert role == (rt.settings.app_db_role, False, False)
        owned = conn.execute(
            text(
                "SELECT count(*) FROM pg_tables"
                " WHERE schemaname = 'public' AND tableowner = current_user"
            )
        ).scalar_one()
        assert owned == 0


def test_every_tenant_table_has_forced_rls_and_a_policy(rt: Runtime) -> None:
    with rt.db.engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                               AND a.attname = 'org_id' AND NOT a.attisdropped),
                       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind = 'r'
                  AND c.relname NOT LIKE 'procrastinate%'
                """
            )
        ).all()
    assert rows
    for name, rls, forced, has_org, policies in rows:
        if name in PLATFORM_TABLES:
            continue
        assert has_org, f"{name} has no org_id: add it, or list it as a platform table"
        assert rls and forced and policies >= 1, f"{name} lacks forced RLS with a policy"


def test_models_declare_the_same_platform_tables() -> None:
    declared = {t.name for t in metadata.sorted_tables if t.info.get("platform")}
    assert declared == PLATFORM_TABLES - {"alembic_version"}
    for table in metadata.sorted_tables:
        if not table.info.get("platform"):
            assert list(table.primary_key.columns)[0].name == "org_id", table.name


def test_migrations_match_the_models(rt: Runtime) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(rt.db.urls.owner)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "include_name": lambda name, type_, _: not str(name).startswith("procrastinate")
                },
            )
            diff = compare_metadata(ctx, metadata)
    finally:
        engine.dispose()
    assert diff == []
