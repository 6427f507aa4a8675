"""OCI meaning on top of a `StorageBackend`: blobs, uploads, manifests, tags, referrers
(`registry.stores.repository.RegistryStore` puts them together). Nothing is imported here:
modules below `registry.stores` (such as `paths`) are imported by the policies that the stores
themselves use, and an eager import here made that a cycle."""
