"""statement-level guards for invoice lines and ledger entries

The guards of 0005 ran once per row: every invoice line looked its invoice up, and every
ledger entry re-checked its whole transaction at commit (a transaction of n entries was
checked n + 1 times). A billing run writes hundreds of thousands of such rows. The same
guarantees, checked once per statement over its transition table:

- the lines of an invoice that is not a draft never change: no line is inserted into,
  updated in (old or new invoice) or deleted from such an invoice, and every line names an
  invoice;
- every ledger entry names a transaction, and after each statement that inserts entries,
  every transaction they belong to has at least two entries and balances per currency
  (stricter than "at commit": a transaction's entries are written by one statement);
- every ledger transaction has at least two balanced entries at commit (deferred, once per
  transaction: a transaction without entries is caught there).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


# Plans. Every check is one set-based query per statement, run with EXECUTE: planned anew
# each time with the tables' current sizes (plpgsql would keep a static query's plan for
# the session, and a plan made while a table was empty scans it once it is large), and
# as a nested loop of primary-key lookups, one per invoice or transaction of the statement
# (a hash join would scan the whole table for a few hundred rows). The deferred check runs
# once per transaction row with a custom plan for the same reason (a generic plan made on
# an empty table looks its row up through any index on org_id).
_LOOKUPS = "SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off"

_LINES_CHECK = """
    EXECUTE $q$
        SELECT count(*) FROM (SELECT DISTINCT org_id, invoice_id FROM {table}) l
        WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.org_id = l.org_id
                          AND i.id = l.invoice_id AND i.status = 'draft')
    $q$ INTO bad;
    IF bad > 0 THEN
        RAISE EXCEPTION 'the lines of a finalized invoice cannot change'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
"""

UPGRADE = (
    "DROP TRIGGER invoice_lines_immutable ON invoice_lines",
    "DROP FUNCTION kassa_invoice_line_immutable()",
    f"""
    CREATE FUNCTION kassa_invoice_lines_immutable() RETURNS trigger LANGUAGE plpgsql
    {_LOOKUPS} AS $$
    DECLARE
        bad bigint;
    BEGIN
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            {_LINES_CHECK.format(table="new_lines")}
        END IF;
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            {_LINES_CHECK.format(table="old_lines")}
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER invoice_lines_immutable_insert AFTER INSERT ON invoice_lines
    REFERENCING NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION kassa_invoice_lines_immutable()
    """,
    """
    CREATE TRIGGER invoice_lines_immutable_update AFTER UPDATE ON invoice_lines
    REFERENCING OLD TABLE AS old_lines NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION kassa_invoice_lines_immutable()
    """,
    """
    CREATE TRIGGER invoice_lines_immutable_delete AFTER DELETE ON invoice_lines
    REFERENCING OLD TABLE AS old_lines
    FOR EACH STATEMENT EXECUTE FUNCTION kassa_invoice_lines_immutable()
    """,
    "DROP TRIGGER ledger_entries_balanced ON ledger_entries",
    "DROP TRIGGER ledger_transactions_balanced ON ledger_transactions",
    "DROP FUNCTION kassa_ledger_balanced()",
    # deferred, once per transaction row: it has entries (then the statement that wrote
    # them checked that they are at least two and balance; entries never change)
    """
    CREATE FUNCTION kassa_ledger_transaction_balanced() RETURNS trigger LANGUAGE plpgsql
    SET plan_cache_mode = force_custom_plan AS $$
    BEGIN
        PERFORM 1 FROM ledger_entries WHERE org_id = NEW.org_id AND transaction_id = NEW.id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ledger transaction % has 0 entries (at least 2)', NEW.id
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE CONSTRAINT TRIGGER ledger_transactions_balanced AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION kassa_ledger_transaction_balanced()
    """,
    # per statement: every new entry names a transaction, and each transaction it touched
    # has at least two entries and balances per currency (its earlier entries included)
    f"""
    CREATE FUNCTION kassa_ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql
    {_LOOKUPS} AS $$
    DECLARE
        bad record;
    BEGIN
        EXECUTE $q$
            SELECT n.transaction_id AS tx FROM (SELECT DISTINCT org_id, transaction_id
                                                FROM new_entries) n
            WHERE NOT EXISTS (SELECT 1 FROM ledger_transactions t
                              WHERE t.org_id = n.org_id AND t.id = n.transaction_id)
            LIMIT 1
        $q$ INTO bad;
        IF bad.tx IS NOT NULL THEN
            RAISE EXCEPTION 'ledger entry names no transaction %', bad.tx
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        EXECUTE $q$
            SELECT e.transaction_id AS tx, e.currency, count(*) AS n, sum(e.debit) AS d,
                   sum(e.credit) AS c
            FROM (SELECT DISTINCT org_id, transaction_id FROM new_entries) n
            JOIN ledger_entries e ON e.org_id = n.org_id AND e.transaction_id = n.transaction_id
            GROUP BY e.transaction_id, e.currency
            HAVING count(*) < 2 OR sum(e.debit) <> sum(e.credit)
            LIMIT 1
        $q$ INTO bad;
        IF bad.tx IS NOT NULL AND bad.d <> bad.c THEN
            RAISE EXCEPTION 'ledger transaction % does not balance in %: debit %, credit %',
                bad.tx, bad.currency, bad.d, bad.c USING ERRCODE = 'check_violation';
        ELSIF bad.tx IS NOT NULL THEN
            RAISE EXCEPTION 'ledger transaction % has % entries (at least 2)', bad.tx, bad.n
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION kassa_ledger_entries_balanced()
    """,
)


def upgrade() -> None:
    for stmt in UPGRADE:
        op.execute(stmt)


def downgrade() -> None:
    raise NotImplementedError("this migration cannot be reverted")
