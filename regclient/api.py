"""One typed async call per endpoint of the OCI Distribution API (distribution-spec/spec.md).

`RegistryClient` owns an httpx.AsyncClient bound to one registry (transport.py) with its
auth flow (auth.py). Error answers are parsed from the spec's JSON body into `RegistryError`
subclasses; nothing here knows about the local store.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import httpx

from ocispec import mediatypes as mt
from ocispec.digest import Digest, DigestError, DigestMismatch, digest_bytes
from regclient.auth import RegistryAuth
from regclient.credentials import Credentials
from regclient.tls import TLSOptions, client_context
from regclient.transport import LazyTLSTransport, RetryPolicy, base_url, make_client

MANIFEST_ACCEPT = ", ".join(
    [mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST]
)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_LINK_RE = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


class RegistryError(Exception):
    """The registry answered with an error status (codes from the spec's error body)."""

    def __init__(self, status: int, message: str, codes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes

    @property
    def code(self) -> str | None:
        return self.codes[0] if self.codes else None


class NotFound(RegistryError):
    """MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN or a bare 404."""


class Unauthorized(RegistryError):
    """401 after the auth flow ran (no or wrong credentials) or 403 (DENIED)."""


class Unsupported(RegistryError):
    """UNSUPPORTED or 405: the registry does not offer this operation."""


class UploadUnknown(RegistryError):
    """BLOB_UPLOAD_UNKNOWN: the upload session is gone; start again."""


class RangeNotSatisfiable(RegistryError):
    """416 on a chunk: the registry's offset differs from ours."""


def _error_class(status: int, codes: tuple[str, ...]) -> type[RegistryError]:
    if "BLOB_UPLOAD_UNKNOWN" in codes:
        return UploadUnknown
    if status == 404 or {"MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN"} & set(codes):
        return NotFound
    if status in (401, 403) or {"UNAUTHORIZED", "DENIED"} & set(codes):
        return Unauthorized
    if status == 405 or "UNSUPPORTED" in codes:
        return Unsupported
    if status == 416:
        return RangeNotSatisfiable
    return RegistryError


MAX_ERROR_BODY = 65536


async def _error_body(response: httpx.Response) -> bytes:
    """At most MAX_ERROR_BODY bytes of an error's body. A streamed response is read only that
    far: a hostile registry's endless 404 body must not be buffered whole."""
    try:
        return response.content[:MAX_ERROR_BODY]
    except httpx.ResponseNotRead:
        pass
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= MAX_ERROR_BODY:
            break
    return bytes(body[:MAX_ERROR_BODY])


async def raise_for_error(response: httpx.Response, what: str) -> None:
    if response.status_code < 400:
        return
    codes: list[str] = []
    messages: list[str] = []
    if response.request.method != "HEAD":
        body = await _error_body(response)
        try:
            errors = httpx.Response(200, content=body).json().get("errors", [])
        except (ValueError, AttributeError):
            errors = []
        for err in errors if isinstance(errors, list) else []:
            if isinstance(err, dict):
                codes.append(str(err.get("code", "")))
                messages.append(str(err.get("message", "")))
    detail = "; ".join(f"{c}: {m}" if m else c for c, m in zip(codes, messages, strict=True))
    message = f"{what}: HTTP {response.status_code}" + (f" ({detail})" if detail else "")
    raise _error_class(response.status_code, tuple(codes))(
        response.status_code, message, tuple(codes)
    )


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    data: bytes
    media_type: str
    digest: Digest


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    media_type: str
    digest: Digest | None
    size: int | None


@dataclass(frozen=True, slots=True)
class UploadSession:
    location: str  # absolute URL of the session
    offset: int  # bytes the registry holds (next byte to send)
    min_chunk: int = 0  # OCI-Chunk-Min-Length, 0 when not announced


@dataclass(frozen=True, slots=True)
class Mounted:
    digest: Digest


class RegistryClient:
    """The registry's endpoints; use `async with RegistryClient(...)`."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: Credentials | None = None,
        insecure: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        tls: TLSOptions | None = None,
    ) -> None:
        self.registry = registry
        tls = tls or TLSOptions()
        origin = httpx.URL(base_url(registry, insecure, tls))
        # an unchecked registry may fall back to plain HTTP on the same host: the registry too
        falls_back = tls.falls_back(registry, insecure)
        origins = (origin, origin.copy_with(scheme="http")) if falls_back else (origin,)
        # the token realm gets credentials: always checked (system store and the registry's
        # CAs), whatever the registry's own setting
        realm_transport = transport or LazyTLSTransport(
            context=lambda: client_context(registry, cert_dir=tls.cert_dir, client_cert=False)
        )
        self.auth = RegistryAuth(credentials, transport=realm_transport, origins=origins)
        self.http = make_client(
            registry,
            insecure=insecure,
            auth=self.auth,
            transport=transport,
            retry=retry,
            tls=tls,
        )
        self._pinged = False

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.auth.aclose()

    # -- base -------------------------------------------------------------------------------

    async def ping(self) -> None:
        """GET /v2/: learns the auth challenge before the first upload body is streamed."""
        response = await self.http.get("/v2/")
        await raise_for_error(response, f"{self.registry}: /v2/")
        self._pinged = True

    async def ensure_pinged(self) -> None:
        if not self._pinged:
            await self.ping()

    # -- manifests --------------------------------------------------------------------------

    async def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        url = f"/v2/{repository}/manifests/{reference}"
        async with self.http.stream("GET", url, headers={"Accept": MANIFEST_ACCEPT}) as response:
            await raise_for_error(response, f"manifest {repository}:{reference}")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > MAX_MANIFEST_BYTES:
                    raise RegistryError(200, f"manifest {repository}:{reference} is over 4 MiB")
        body = bytes(data)
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        digest = _check_manifest_digest(body, reference, response.headers)
        return FetchedManifest(body, media_type, digest)

    async def head_manifest(self, repository: str, reference: str) -> ManifestInfo | None:
        url = f"/v2/{repository}/manifests/{reference}"
        response = await self.http.head(url, headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 404:
            return None
        await raise_for_error(response, f"manifest {repository}:{reference}")
        return ManifestInfo(
            response.headers.get("Content-Type", "").split(";")[0].strip(),
            _header_digest(response.headers),
            _int_header(response.headers, "Content-Length"),
        )

    async def put_manifest(
        self, repository: str, reference: str, data: bytes, media_type: str
    ) -> Digest:
        await self.ensure_pinged()
        response = await self.http.put(
            f"/v2/{repository}/manifests/{reference}",
            content=data,
            headers={"Content-Type": media_type},
        )
        await raise_for_error(response, f"put manifest {repository}:{reference}")
        return digest_bytes(data)

    async def delete_manifest(self, repository: str, reference: str) -> None:
        response = await self.http.delete(f"/v2/{repository}/manifests/{reference}")
        await raise_for_error(response, f"delete manifest {repository}:{reference}")

    # -- blobs ------------------------------------------------------------------------------

    async def head_blob(self, repository: str, digest: Digest) -> int | None:
        """The blob's size if the repository has it, else None."""
        response = await self.http.head(f"/v2/{repository}/blobs/{digest}")
        if response.status_code == 404:
            return None
        await raise_for_error(response, f"blob {repository}@{digest}")
        return _int_header(response.headers, "Content-Length")

    @asynccontextmanager
    async def get_blob(
        self, repository: str, digest: Digest, offset: int = 0
    ) -> AsyncIterator[httpx.Response]:
        """A streaming response; from `offset` with Range (status 206, or 200 if ignored)."""
        # identity: byte offsets (Range, resume) must count the blob's own bytes
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        async with self.http.stream(
            "GET", f"/v2/{repository}/blobs/{digest}", headers=headers
        ) as response:
            await raise_for_error(response, f"blob {repository}@{digest}")
            yield response

    async def delete_blob(self, repository: str, digest: Digest) -> None:
        response = await self.http.delete(f"/v2/{repository}/blobs/{digest}")
        await raise_for_error(response, f"delete blob {repository}@{digest}")

    # -- uploads ----------------------------------------------------------------------------

    async def start_upload(self, repository: str) -> UploadSession:
        await self.ensure_pinged()
        response = await self.http.post(f"/v2/{repository}/blobs/uploads/")
        await raise_for_error(response, f"start upload to {repository}")
        return self._session(response)

    async def mount_blob(
        self, repository: str, digest: Digest, source: str
    ) -> Mounted | UploadSession:
        """Cross-repository mount: `Mounted` on 201, else the upload session it opened."""
        await self.ensure_pinged()
        query = urlencode({"mount": str(digest), "from": source})
        response = await self.http.post(f"/v2/{repository}/blobs/uploads/?{query}")
        await raise_for_error(response, f"mount {digest} from {source} into {repository}")
        if response.status_code == 201:
            return Mounted(digest)
        return self._session(response)

    async def patch_chunk(
        self,
        session: UploadSession,
        body: AsyncIterator[bytes],
        length: int,
    ) -> UploadSession:
        """Send `length` bytes starting at `session.offset` (Content-Range)."""
        end = session.offset + length - 1
        response = await self.http.patch(
            session.location,
            content=body,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(length),
                "Content-Range": f"{session.offset}-{end}",
            },
        )
        await raise_for_error(response, "upload chunk")
        return self._session(response, session, session.offset + length)

    async def upload_status(self, session: UploadSession) -> UploadSession:
        response = await self.http.get(session.location)
        await raise_for_error(response, "upload status")
        return self._session(response, session)

    async def finish_upload(
        self,
        session: UploadSession,
        digest: Digest,
        body: AsyncIterator[bytes] | None = None,
        length: int = 0,
        ranged: bool = False,
    ) -> None:
        """PUT ?digest=, with the (rest of the) blob as body or none. `ranged`: the body is
        the final chunk after `session.offset` bytes, said in Content-Range (the spec's)."""
        url = _with_query(session.location, {"digest": str(digest)})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        if ranged and length:
            headers["Content-Range"] = f"{session.offset}-{session.offset + length - 1}"
        response = await self.http.put(
            url, content=body if body is not None else b"", headers=headers
        )
        await raise_for_error(response, f"finish upload of {digest}")

    async def cancel_upload(self, session: UploadSession) -> None:
        response = await self.http.delete(session.location)
        if response.status_code != 404:
            await raise_for_error(response, "cancel upload")

    def _session(
        self,
        response: httpx.Response,
        previous: UploadSession | None = None,
        expected_offset: int = 0,
    ) -> UploadSession:
        location = response.headers.get("Location")
        if not location:
            if previous is None:
                raise RegistryError(response.status_code, "upload answer without Location")
            location = previous.location
        location = urljoin(str(response.request.url), location)
        offset = 0
        rng = response.headers.get("Range")
        if rng:
            match = re.fullmatch(r"(?:bytes=)?0-(\d+)", rng.strip())
            if match is None:
                raise RegistryError(response.status_code, f"upload answer with bad Range {rng!r}")
            end = int(match.group(1))
            # distribution says "0-0" both for an empty session and for one byte
            offset = end + 1 if end > 0 or expected_offset == 1 else 0
        min_chunk = _int_header(response.headers, "OCI-Chunk-Min-Length") or (
            previous.min_chunk if previous else 0
        )
        return UploadSession(location, offset, min_chunk)

    # -- listings ---------------------------------------------------------------------------

    async def tags(self, repository: str, page_size: int | None = None) -> list[str]:
        url = f"/v2/{repository}/tags/list" + (f"?n={page_size}" if page_size else "")
        return await self._paginate(url, "tags", f"tags of {repository}")

    async def catalog(self, page_size: int | None = None) -> list[str]:
        url = "/v2/_catalog" + (f"?n={page_size}" if page_size else "")
        return await self._paginate(url, "repositories", "catalog")

    async def _paginate(self, url: str, key: str, what: str) -> list[str]:
        out: list[str] = []
        seen: set[str] = set()
        next_url: str | None = url
        while next_url is not None and next_url not in seen:
            seen.add(next_url)
            response = await self.http.get(next_url)
            await raise_for_error(response, what)
            try:
                items = response.json().get(key) or []
            except (ValueError, AttributeError):
                raise RegistryError(response.status_code, f"{what}: not a JSON object") from None
            out.extend(str(x) for x in items)
            next_url = _next_link(response.headers.get("Link"))
        return out

    async def referrers(
        self, repository: str, digest: Digest, artifact_type: str | None = None
    ) -> dict[str, Any]:
        url = f"/v2/{repository}/referrers/{digest}"
        if artifact_type:
            url += "?" + urlencode({"artifactType": artifact_type})
        response = await self.http.get(url, headers={"Accept": mt.OCI_INDEX})
        await raise_for_error(response, f"referrers of {repository}@{digest}")
        try:
            body = response.json()
        except ValueError:
            raise RegistryError(response.status_code, "referrers: not JSON") from None
        if not isinstance(body, dict):
            raise RegistryError(response.status_code, "referrers: not a JSON object")
        return body


def _next_link(header: str | None) -> str | None:
    if not header:
        return None
    match = _LINK_RE.search(header)
    return match.group(1) if match else None


def _with_query(url: str, extra: dict[str, str]) -> str:
    parsed = urlparse(url)
    query = parse_qs(parsed.query, keep_blank_values=True)
    pairs = [(k, v) for k, vs in query.items() for v in vs] + list(extra.items())
    return parsed._replace(query=urlencode(pairs)).geturl()


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None or not value.isdigit():
        return None
    return int(value)


def _header_digest(headers: Mapping[str, str]) -> Digest | None:
    value = headers.get("Docker-Content-Digest")
    if not value:
        return None
    try:
        return Digest.parse(value)
    except DigestError:
        return None


def _check_manifest_digest(body: bytes, reference: str, headers: Mapping[str, str]) -> Digest:
    """The manifest's digest, checked against the reference if pinned, else the header."""
    if Digest.is_valid(reference):
        expected = Digest.parse(reference)
        actual = digest_bytes(body, expected.algorithm)
        if actual != expected:
            raise DigestMismatch(
                expected, actual, f"manifest {reference}: content has digest {actual}"
            )
        return actual
    announced = _header_digest(headers)
    if announced is not None:
        actual = digest_bytes(body, announced.algorithm)
        if actual != announced:
            raise DigestMismatch(
                announced,
                actual,
                f"manifest {reference}: Docker-Content-Digest {announced} but content is {actual}",
            )
        return actual
    return digest_bytes(body)
