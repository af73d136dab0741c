"""drafts looked up by id through an index of drafts; statistics refreshed as a run grows

The statement-level guard on invoice lines (0006) and the billing run's bulk finalization
look drafts up by (org_id, id) with ``status = 'draft'``. The only index matching that
predicate was ``ix_invoices_org_id_finalize_at`` (drafts by finalize_at): the planner,
believing drafts rare (the statistics of a table of mostly finalized invoices say so, and
a table analyzed while empty says nothing at all), read every draft of the organization
through it, once per statement. During a billing run the drafts are the run's own
invoices, tens of thousands of them: each chunk's statements grew with the run. A partial
index of drafts by id answers such a lookup with one index probe, whatever the statistics
say, and stays as small as the number of drafts.

``kassa_analyze_grown()``: a billing run bulk-loads invoices, lines, ledger rows and events,
and every statement of a chunk is planned from those tables' statistics. Planned from
statistics taken while a table was empty or a tenth of its size (autovacuum analyzes a
table a minute after it grew by a tenth at best), an organization's rows look like a
handful, and lookups go through any index on ``org_id``, reading all of them, once per
chunk: each chunk cost more than the previous one. PostgreSQL's advice after a bulk load
is ANALYZE; the run asks for it (this function runs as the tables' owner, which the
application's role is not) whenever one of these tables has changed by more than it held
when last analyzed (and by at least 1 000 rows): a few ANALYZE per table and run, each of
a sample. One caller at a time; the others go on without waiting.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 09:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


GROWN = ("invoices", "invoice_lines", "ledger_transactions", "ledger_entries",
         "ledger_accounts", "domain_events")  # fmt: skip

ANALYZE_GROWN = f"""
CREATE FUNCTION kassa_analyze_grown() RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp AS $$
DECLARE
    t record;
    n integer := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('kassa_analyze_grown')) THEN
        RETURN 0;
    END IF;
    FOR t IN
        SELECT s.relid::regclass AS rel FROM pg_stat_user_tables s
        JOIN pg_class c ON c.oid = s.relid
        WHERE s.schemaname = 'public'
          AND s.relname IN ({", ".join(f"'{t}'" for t in GROWN)})
          AND s.n_mod_since_analyze > greatest(c.reltuples, 0) + 1000
    LOOP
        EXECUTE format('ANALYZE %s', t.rel);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$
"""


def upgrade() -> None:
    op.create_index(
        "ix_invoices_org_id_id_draft", "invoices", ["org_id", "id"], unique=False,
        postgresql_where="status = 'draft'",
    )  # fmt: skip
    op.execute(ANALYZE_GROWN)


def downgrade() -> None:
    op.execute("DROP FUNCTION kassa_analyze_grown()")
    op.drop_index("ix_invoices_org_id_id_draft", table_name="invoices")
