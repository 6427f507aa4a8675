"""The one ordered route table. Repository names contain slashes, hence `{name:path}`;
upload routes come before `blobs/{digest}` so `uploads` is never taken for a digest."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from registry.handlers import blobs, catalog, manifests, referrers, tags, uploads
from registry.handlers.base import root

_NAME = "/v2/{name:path}"

ROUTES: list[BaseRoute] = [
    Route("/v2/", root, methods=["GET"]),
    Route("/v2/_catalog", catalog.list_repositories, methods=["GET"]),
    Route(f"{_NAME}/blobs/uploads/", uploads.start_upload, methods=["POST"]),
    Route(f"{_NAME}/blobs/uploads", uploads.start_upload, methods=["POST"]),
    Route(f"{_NAME}/blobs/uploads/{{upload_id}}", uploads.patch_upload, methods=["PATCH"]),
    Route(f"{_NAME}/blobs/uploads/{{upload_id}}", uploads.put_upload, methods=["PUT"]),
    Route(f"{_NAME}/blobs/uploads/{{upload_id}}", uploads.upload_status, methods=["GET"]),
    Route(f"{_NAME}/blobs/uploads/{{upload_id}}", uploads.cancel_upload, methods=["DELETE"]),
    Route(f"{_NAME}/blobs/{{digest}}", blobs.get_blob, methods=["GET", "HEAD"]),
    Route(f"{_NAME}/blobs/{{digest}}", blobs.delete_blob, methods=["DELETE"]),
    Route(f"{_NAME}/manifests/{{reference}}", manifests.get_manifest, methods=["GET", "HEAD"]),
    Route(f"{_NAME}/manifests/{{reference}}", manifests.put_manifest, methods=["PUT"]),
    Route(f"{_NAME}/manifests/{{reference}}", manifests.delete_manifest, methods=["DELETE"]),
    Route(f"{_NAME}/tags/list", tags.list_tags, methods=["GET"]),
    Route(f"{_NAME}/referrers/{{digest}}", referrers.list_referrers, methods=["GET"]),
]
