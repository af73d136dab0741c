"""Invoices and credit notes as documents: PDF (WeasyPrint) and EN 16931 UBL 2.1 XML."""
