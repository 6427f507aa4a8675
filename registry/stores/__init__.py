"""OCI meaning on top of a `StorageBackend`: blobs, uploads, manifests, tags, referrers."""

from registry.stores.repository import RegistryStore

__all__ = ["RegistryStore"]
