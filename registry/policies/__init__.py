"""Policies declared in the `policies:` settings section: tag immutability, retention, quotas
(docs/policies.md)."""
