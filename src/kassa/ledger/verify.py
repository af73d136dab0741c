"""``kassa ledger verify``: every invariant of the ledger, checked from the rows (the
database enforces them on write; this proves nothing slipped past, e.g. a restore)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

_CHECKS: tuple[tuple[str, str], ...] = (
    (
        "unbalanced transaction",
        """SELECT transaction_id || ' ' || currency || ' debit ' || sum(debit) || ' credit '
                  || sum(credit)
           FROM ledger_entries WHERE org_id = :org
           GROUP BY transaction_id, currency HAVING sum(debit) <> sum(credit)""",
    ),
    (
        "transaction with fewer than two entries",
        """SELECT t.id FROM ledger_transactions t
           LEFT JOIN ledger_entries e ON e.org_id = t.org_id AND e.transaction_id = t.id
           WHERE t.org_id = :org GROUP BY t.id HAVING count(e.line) < 2""",
    ),
    (
        "entry of an unknown transaction or account",
        """SELECT e.transaction_id || '/' || e.line FROM ledger_entries e
           LEFT JOIN ledger_transactions t ON t.org_id = e.org_id AND t.id = e.transaction_id
           LEFT JOIN ledger_accounts a ON a.org_id = e.org_id AND a.id = e.account_id
           WHERE e.org_id = :org AND (t.id IS NULL OR a.id IS NULL
                 OR a.currency <> e.currency OR t.currency <> e.currency)""",
    ),
    (
        "invoice amount_due differs from its receivable",
        """SELECT i.id || ' amount_due ' || i.amount_due || ' ledger '
                  || coalesce(sum(e.debit - e.credit), 0)
           FROM invoices i
           LEFT JOIN ledger_entries e ON e.org_id = i.org_id AND e.invoice_id = i.id
           WHERE i.org_id = :org AND i.status <> 'draft'
           GROUP BY i.id, i.amount_due
           HAVING i.amount_due <> coalesce(sum(e.debit - e.credit), 0)""",
    ),
    (
        "finalized invoice missing from the ledger",
        """SELECT i.id FROM invoices i
           WHERE i.org_id = :org AND i.status <> 'draft' AND i.total <> 0
             AND NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.org_id = i.org_id
                             AND t.idempotency_key = 'invoice_finalized:' || i.id)""",
    ),
    (
        "invoice numbers with a gap",
        """SELECT 'expected ' || count(*) || ' numbers, highest is ' || max(sequence)
           FROM invoices WHERE org_id = :org AND sequence IS NOT NULL
           HAVING count(*) <> coalesce(max(sequence), 0)
               OR count(DISTINCT sequence) <> count(*)""",
    ),
    (
        "settlement does not add up",
        """SELECT id FROM invoices WHERE org_id = :org AND status IN ('open', 'paid')
             AND amount_due <> greatest(total, 0) - credit_applied - amount_paid
                               - amount_credited""",
    ),
    (
        "credit note over what was invoiced",
        """SELECT i.id FROM invoices i JOIN credit_notes c
               ON c.org_id = i.org_id AND c.invoice_id = i.id
           WHERE i.org_id = :org GROUP BY i.id, i.total HAVING sum(c.total) > i.total""",
    ),
)


def verify(session: Session, org_id: str) -> list[str]:
    """Breaches as human-readable lines (empty when the ledger is sound)."""
    breaches = []
    for name, sql in _CHECKS:
        for (detail,) in session.execute(text(sql), {"org": org_id}):
            breaches.append(f"{name}: {detail}")
    return breaches
