"""The facade handlers talk to: every store over one backend."""

from __future__ import annotations

from registry import errors
from registry.policies.config import Policies
from registry.policies.quota import QuotaStore
from registry.shared.blobcache import BlobCache
from registry.stores.blobs import BlobStore
from registry.stores.catalog import CatalogStore
from registry.stores.foreign import UrlRules
from registry.stores.manifests import ManifestStore
from registry.stores.pagination import Page
from registry.stores.referrers import ReferrerStore
from registry.stores.tags import TagStore
from registry.stores.uploads import DEFAULT_BUFFER_SIZE, UploadStore
from storage_backends.base import StorageBackend


class RegistryStore:
    def __init__(
        self,
        backend: StorageBackend,
        upload_buffer_size: int = DEFAULT_BUFFER_SIZE,
        blob_cache: BlobCache | None = None,
        policies: Policies | None = None,
        url_rules: UrlRules | None = None,
    ) -> None:
        self.backend = backend
        self.catalog = CatalogStore(backend)
        self.blobs = BlobStore(backend, self.catalog, blob_cache)
        self.uploads = UploadStore(backend, self.blobs, upload_buffer_size)
        self.tags = TagStore(backend, policies)
        self.referrers = ReferrerStore(backend)
        self.quotas = QuotaStore(backend, policies) if policies and policies.quotas else None
        self.manifests = ManifestStore(
            backend, self.blobs, self.tags, self.referrers, self.catalog, self.quotas, url_rules
        )

    async def list_tags(self, name: str, n: int | None, last: str | None) -> Page:
        """A page of `name`'s tags; NAME_UNKNOWN when the repository does not exist."""
        if not await self.catalog.exists(name):
            raise errors.NAME_UNKNOWN(detail={"name": name})
        return await self.tags.page(name, n, last)
