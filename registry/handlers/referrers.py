"""`GET /v2/<name>/referrers/<digest>?artifactType=`: an OCI index, never a 404."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ocispec import mediatypes as mt
from registry.auth.base import pull
from registry.handlers.base import authorize, parse_digest, repo_name, store


async def list_referrers(request: Request) -> Response:
    name = repo_name(request)
    subject = parse_digest(request.path_params["digest"])
    # `artifactType=` (empty) is a filter too: referrers without an artifact type.
    artifact_type = request.query_params.get("artifactType")
    await authorize(request, [pull(name)])
    descriptors = await store(request).referrers.list(name, subject, artifact_type)
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": descriptors}
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type is not None else {}
    return JSONResponse(index, headers=headers, media_type=mt.OCI_INDEX)
