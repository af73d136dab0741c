"""Subscriptions: a customer's contract on a plan, its lifecycle and billing periods."""
