"""The pyreg registry server: the OCI Distribution API v1.1 over a StorageBackend."""
