"""Test clocks: a simulated "now" for test-mode customers, advanced on demand."""
