"""Identity and access: users, members and roles, tokens, API keys, signing keys."""
