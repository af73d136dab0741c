"""Invoices and credit notes: billing runs turn subscription periods into invoices."""
