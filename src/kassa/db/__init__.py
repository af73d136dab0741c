"""Database access: engines, sessions, tenancy (RLS), embedded PostgreSQL, migrations."""
