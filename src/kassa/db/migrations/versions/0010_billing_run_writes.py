"""billing run writes: invoices issued final and numbered last; ledger transactions
checked per statement

A billing run finalizes most invoices in the transaction that issues them. It used to
insert each as a draft, write its lines, then UPDATE it to final: a second version of
every invoice row and of each of its index entries, plus a row trigger call. Now such an
invoice is inserted final, so its lines come after a row that is no longer a draft. The
lines guard (0006) keeps its promise — the lines of a *finalized* invoice never change —
in the form that matters to everyone else: lines may be inserted into a draft, or into an
invoice this very transaction inserted or last wrote (its ``xmin``), which nobody else
can see before it commits, final and complete. Updating or deleting the lines of an
invoice that is not a draft stays refused, in any transaction.

``kassa_document_number(prefix, sequence)``: a document's number as the application
formats it (``PREFIX-000042``; wider than six digits as needed), so that a billing chunk
can take its numbers as its last statement and number the rows it staged in SQL: the
document counter stays locked from that statement to the commit only.

Ledger transactions are written together with their entries, in one statement (a
data-modifying ``WITH``), and checked when it ends: every new transaction has at least two
entries (``kassa_ledger_transactions_complete``, over the statement's new transactions), and
every transaction that gained entries balances per currency (0006, unchanged). This replaces
the deferred row trigger of 0006, which ran once per transaction at commit (a billing chunk
of 500 invoices: 500 trigger calls, each planned anew). A transaction written without its
entries is refused at once instead of at commit.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 14:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# As in 0006, plus no JIT: with sequential scans priced out, a scan of the statement's
# transition table costs more than ``jit_above_cost``, and a server built with LLVM would
# compile every check (50-100 ms) to run it in well under a millisecond.
_LOOKUPS = (
    "SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off"
)

# Each check probes, per row of the statement, the rows of its key through a LATERAL
# subquery (an aggregate: never pulled up into a join). Written as joins, as in 0006, the
# checks were at the mercy of the tables' statistics: row-level security adds
# ``org_id = current_setting(…)`` to every scan, and while the statistics still said
# "a handful of rows" (a new installation, the first chunks of a billing run) the planner
# read the whole organization once through an index on ``org_id``, kept it in memory and
# compared every pair: 500 ledger transactions against 3 000 entries cost 120 ms, a chunk
# more with every chunk, where the probes cost a millisecond.
_CHECK = """
    EXECUTE $q$
        SELECT count(*) FROM (SELECT DISTINCT org_id, invoice_id FROM {table}) l
        CROSS JOIN LATERAL (SELECT count(*) AS found FROM invoices i
                            WHERE i.org_id = l.org_id AND i.id = l.invoice_id
                            AND {allowed}) c
        WHERE c.found = 0
    $q$ INTO bad;
    IF bad > 0 THEN
        RAISE EXCEPTION 'the lines of a finalized invoice cannot change'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
"""
_DRAFT = "i.status = 'draft'"
_DRAFT_OR_OWN = "(i.status = 'draft' OR i.xmin = pg_current_xact_id()::xid)"

UPGRADE = (
    f"""
    CREATE OR REPLACE FUNCTION kassa_invoice_lines_immutable() RETURNS trigger
    LANGUAGE plpgsql {_LOOKUPS} AS $$
    DECLARE
        bad bigint;
    BEGIN
        IF TG_OP = 'INSERT' THEN
            {_CHECK.format(table="new_lines", allowed=_DRAFT_OR_OWN)}
        END IF;
        IF TG_OP = 'UPDATE' THEN
            {_CHECK.format(table="new_lines", allowed=_DRAFT)}
        END IF;
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            {_CHECK.format(table="old_lines", allowed=_DRAFT)}
        END IF;
        RETURN NULL;
    END $$
    """,
    "DROP TRIGGER ledger_transactions_balanced ON ledger_transactions",
    "DROP FUNCTION kassa_ledger_transaction_balanced()",
    # every transaction a statement wrote has at least two entries when it ends
    f"""
    CREATE FUNCTION kassa_ledger_transactions_complete() RETURNS trigger LANGUAGE plpgsql
    {_LOOKUPS} AS $$
    DECLARE
        bad record;
    BEGIN
        EXECUTE $q$
            SELECT n.id AS tx, c.n FROM new_transactions n
            CROSS JOIN LATERAL (SELECT count(*) AS n FROM ledger_entries e
                                WHERE e.org_id = n.org_id AND e.transaction_id = n.id) c
            WHERE c.n < 2 LIMIT 1
        $q$ INTO bad;
        IF bad.tx IS NOT NULL THEN
            RAISE EXCEPTION 'ledger transaction % has % entries (at least 2)', bad.tx, bad.n
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    # every entry a statement wrote names a transaction, and each transaction it touched
    # has at least two entries and balances per currency (0006's two checks in one probe)
    f"""
    CREATE OR REPLACE FUNCTION kassa_ledger_entries_balanced() RETURNS trigger
    LANGUAGE plpgsql {_LOOKUPS} AS $$
    DECLARE
        bad record;
    BEGIN
        EXECUTE $q$
            SELECT n.transaction_id AS tx, c.currency, c.n, c.d, c.c, c.known
            FROM (SELECT DISTINCT org_id, transaction_id FROM new_entries) n
            CROSS JOIN LATERAL (
                SELECT e.currency, count(*) AS n, sum(e.debit) AS d, sum(e.credit) AS c,
                       EXISTS (SELECT 1 FROM ledger_transactions t
                               WHERE t.org_id = n.org_id AND t.id = n.transaction_id) AS known
                FROM ledger_entries e
                WHERE e.org_id = n.org_id AND e.transaction_id = n.transaction_id
                GROUP BY e.currency) c
            WHERE NOT c.known OR c.n < 2 OR c.d <> c.c
            LIMIT 1
        $q$ INTO bad;
        IF bad.tx IS NOT NULL AND NOT bad.known THEN
            RAISE EXCEPTION 'ledger entry names no transaction %', bad.tx
                USING ERRCODE = 'foreign_key_violation';
        ELSIF bad.tx IS NOT NULL AND bad.d <> bad.c THEN
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
    CREATE TRIGGER ledger_transactions_complete AFTER INSERT ON ledger_transactions
    REFERENCING NEW TABLE AS new_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION kassa_ledger_transactions_complete()
    """,
    """
    CREATE FUNCTION kassa_document_number(prefix text, sequence bigint) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
        SELECT prefix || '-' || lpad(sequence::text, greatest(6, length(sequence::text)), '0')
    $$
    """,
)


def upgrade() -> None:
    for stmt in UPGRADE:
        op.execute(stmt)


def downgrade() -> None:
    raise NotImplementedError("this migration cannot be reverted")
