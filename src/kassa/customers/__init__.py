"""Customers: whom an organization bills."""
