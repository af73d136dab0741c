"""Kassa: an open-source, multi-tenant meter-to-cash platform."""

__version__ = "0.1.0"
