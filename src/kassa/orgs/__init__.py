"""Organizations: the platform's tenants and their settings."""
