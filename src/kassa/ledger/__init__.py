"""The double-entry ledger: every money movement, balanced and append-only."""
