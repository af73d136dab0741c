"""Meter readings: cumulative register values of physical meters turned into usage events."""
