"""The request sequences of the OCI conformance suite's current runner (conformance/api.go), with
its response checks, over httpx.

Where the suite accepts a fallback and records the API as unsupported (a monolithic POST
answered 202, a mount answered 202, a missing Docker-Content-Digest), these helpers fail
instead: pyreg supports every one of those APIs, so a fallback would be a regression.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.registry.conformance.requests import with_query
from tests.registry.conformance.testdata import MT_IMAGE, MT_INDEX, MT_OCTET

CHUNK_MIN = 1024  # the suite's own lower bound for chunk sizes
ACCEPT = [("Accept", MT_INDEX), ("Accept", MT_IMAGE)]


def _fail(resp: httpx.Response, what: str) -> str:
    return (
        f"{what}: {resp.request.method} {resp.request.url} -> {resp.status_code} {resp.text[:300]}"
    )


def expect(resp: httpx.Response, *statuses: int) -> httpx.Response:
    assert resp.status_code in statuses, _fail(resp, f"expected one of {statuses}")
    return resp


def loc(resp: httpx.Response) -> str:
    value: str = resp.headers.get("Location", "")
    assert value, _fail(resp, "no Location header")
    return value


def verify_digest(resp: httpx.Response, dig: str) -> None:
    """VerifyDigest with RequireDigestHeader (the 1.1+dev default): present and equal."""
    assert resp.headers.get("Docker-Content-Digest") == dig, _fail(resp, "Docker-Content-Digest")


def detect_media_type(body: bytes) -> str:
    try:
        value: Any = httpx.Response(200, content=body).json().get("mediaType")
    except ValueError:
        return MT_IMAGE
    return value if isinstance(value, str) else MT_IMAGE


def detect_subject(body: bytes) -> str | None:
    try:
        subject: Any = httpx.Response(200, content=body).json().get("subject")
    except ValueError:
        return None
    return subject.get("digest") if isinstance(subject, dict) else None


class Api:
    def __init__(self, client: httpx.Client) -> None:
        self.c = client

    # blobs
    def blob_verify_location(self, location: str, body: bytes) -> None:
        resp = expect(self.c.get(location), 200)
        assert resp.content == body, _fail(resp, "blob at Location differs")

    def _put(self, url: str, dig: str, body: bytes, bad: bool) -> httpx.Response:
        resp = self.c.put(
            with_query(url, digest=dig), headers={"Content-Type": MT_OCTET}, content=body
        )
        return expect(resp, 400) if bad else expect(resp, 201)

    def blob_post_only(self, repo: str, dig: str, body: bytes, bad: bool = False) -> None:
        resp = self.c.post(
            f"/v2/{repo}/blobs/uploads/",
            params={"digest": dig},
            headers={"Content-Type": MT_OCTET},
            content=body,
        )
        if bad:
            expect(resp, 400)
            return
        expect(resp, 201)
        verify_digest(resp, dig)
        self.blob_verify_location(loc(resp), body)

    def blob_post_put(self, repo: str, dig: str, body: bytes, bad: bool = False) -> None:
        resp = expect(self.c.post(f"/v2/{repo}/blobs/uploads/"), 202)
        resp = self._put(loc(resp), dig, body, bad)
        if not bad:
            verify_digest(resp, dig)
            self.blob_verify_location(loc(resp), body)

    def blob_patch_stream(self, repo: str, dig: str, body: bytes, bad: bool = False) -> None:
        resp = expect(self.c.post(f"/v2/{repo}/blobs/uploads/", content=b""), 202)
        # no Content-Length: a streamed PATCH (httpx sends a generator chunked)
        resp = self.c.patch(loc(resp), headers={"Content-Type": MT_OCTET}, content=iter([body]))
        expect(resp, 202)
        resp = self._put(loc(resp), dig, b"", bad)
        if not bad:
            verify_digest(resp, dig)
            self.blob_verify_location(loc(resp), body)

    def blob_patch_chunked(
        self,
        repo: str,
        dig: str,
        body: bytes,
        *,
        put_last_chunk: bool = False,
        out_of_order: bool = False,
        bad: bool = False,
    ) -> str | None:
        """Returns the registry's OCI-Chunk-Min-Length, if any."""
        resp = expect(self.c.post(f"/v2/{repo}/blobs/uploads/", content=b""), 202)
        min_header: str | None = resp.headers.get("OCI-Chunk-Min-Length")
        url = loc(resp)
        chunk = len(body) // 3 + 1
        if min_header:
            chunk = max(chunk, int(min_header))
        chunk = min(max(chunk, CHUNK_MIN), len(body))
        last = -1
        final: httpx.Response | None = None
        while last < len(body) - 1:
            if out_of_order:
                bad_start = last + 1 + chunk
                if bad_start >= len(body):
                    bad_start = 0
                bad_last = min(bad_start + chunk - 1, len(body) - 1)
                is_put = put_last_chunk and bad_last == len(body) - 1
                resp = self.c.request(
                    "PUT" if is_put else "PATCH",
                    with_query(url, digest=dig) if is_put else url,
                    headers={"Content-Type": MT_OCTET, "Content-Range": f"{bad_start}-{bad_last}"},
                    content=body[bad_start : bad_last + 1],
                )
                expect(resp, 416)
                url = resp.headers.get("Location", url)
                # recover: the upload's status says where it stands
                resp = expect(self.c.get(url), 204)
                url = loc(resp)
                rng = resp.headers.get("Range", "")
                assert rng.startswith("0-"), _fail(resp, f"Range {rng!r} lacks the 0- prefix")
                if last >= 0:
                    assert int(rng[2:]) == last, _fail(resp, f"Range {rng!r}, expected 0-{last}")
            start = last + 1
            last = min(start + chunk - 1, len(body) - 1)
            headers = {"Content-Type": MT_OCTET, "Content-Range": f"{start}-{last}"}
            if put_last_chunk and last == len(body) - 1:
                resp = self.c.put(
                    with_query(url, digest=dig), headers=headers, content=body[start : last + 1]
                )
                final = expect(resp, 400) if bad else expect(resp, 201)
            else:
                resp = expect(
                    self.c.patch(url, headers=headers, content=body[start : last + 1]), 202
                )
                url = loc(resp)
        if not put_last_chunk:
            final = self._put(url, dig, b"", bad)
        assert final is not None
        if not bad:
            verify_digest(final, dig)
            self.blob_verify_location(loc(final), body)
        return min_header

    def blob_post_cancel(self, repo: str) -> None:
        resp = expect(self.c.post(f"/v2/{repo}/blobs/uploads/"), 202)
        url = loc(resp)
        expect(self.c.delete(url), 204)
        # not in the suite's sequence: the cancelled session is gone
        expect(self.c.get(url), 404)

    def blob_mount(
        self, repo: str, source: str | None, dig: str, body: bytes, *, fallback: bool = False
    ) -> None:
        """A mount must answer 201; with `fallback` it must instead open an upload session
        (202) which the blob is then PUT into, as the suite does when a mount is refused."""
        params = {"mount": dig, **({"from": source} if source else {})}
        resp = self.c.post(f"/v2/{repo}/blobs/uploads/", params=params)
        if fallback:
            expect(resp, 202)
            resp = self._put(loc(resp), dig, body, False)
        else:
            expect(resp, 201)
        verify_digest(resp, dig)
        self.blob_verify_location(loc(resp), body)

    def blob_mount_missing(self, repo: str, source: str, dig: str, body: bytes) -> None:
        """A mount from a repository without the blob falls back to an upload session."""
        resp = self.c.post(f"/v2/{repo}/blobs/uploads/", params={"mount": dig, "from": source})
        expect(resp, 202)
        resp = self._put(loc(resp), dig, body, False)
        verify_digest(resp, dig)
        self.blob_verify_location(loc(resp), body)

    def blob_head_exists(self, repo: str, dig: str, body: bytes | None) -> None:
        resp = expect(self.c.head(f"/v2/{repo}/blobs/{dig}"), 200)
        assert resp.content == b""
        if body is not None:
            assert resp.headers.get("Content-Length") == str(len(body)), _fail(resp, "length")
        verify_digest(resp, dig)

    def blob_get_full(self, repo: str, dig: str, body: bytes | None) -> None:
        resp = expect(self.c.get(f"/v2/{repo}/blobs/{dig}"), 200)
        if body is not None:
            assert resp.content == body, _fail(resp, "blob content differs")
            assert resp.headers.get("Content-Length") == str(len(body)), _fail(resp, "length")
        verify_digest(resp, dig)

    def blob_delete(self, repo: str, dig: str) -> None:
        expect(self.c.delete(f"/v2/{repo}/blobs/{dig}"), 202)
        # BlobDeleteAtomic: gone at once
        expect(self.c.head(f"/v2/{repo}/blobs/{dig}"), 404)

    def blob_push_any(self, repo: str, dig: str, body: bytes) -> None:
        self.blob_post_put(repo, dig, body)

    # manifests
    def manifest_put(
        self,
        repo: str,
        ref: str,
        dig: str,
        body: bytes,
        tags: list[str] | None = None,
        bad: bool = False,
    ) -> None:
        media_type = detect_media_type(body)
        resp = self.c.put(
            f"/v2/{repo}/manifests/{ref}",
            params=[("tag", t) for t in tags or []],
            headers={"Content-Type": media_type},
            content=body,
        )
        if bad:
            expect(resp, 400)
            return
        expect(resp, 201)
        if subject := detect_subject(body):
            assert resp.headers.get("OCI-Subject") == subject, _fail(resp, "OCI-Subject")
        verify_digest(resp, dig)
        for tag in tags or []:
            returned = [t.strip() for v in resp.headers.get_list("OCI-Tag") for t in v.split(",")]
            assert tag in returned, _fail(resp, f"OCI-Tag lacks {tag}")
        got = expect(self.c.get(loc(resp), headers=ACCEPT), 200)
        assert got.headers.get("Content-Type") == media_type
        assert got.headers.get("Content-Length") == str(len(body))
        assert got.content == body

    def manifest_get_exists(self, repo: str, ref: str, dig: str, body: bytes) -> None:
        resp = expect(self.c.get(f"/v2/{repo}/manifests/{ref}", headers=ACCEPT), 200)
        assert resp.content == body, _fail(resp, "manifest content differs")
        assert resp.headers.get("Content-Type") == detect_media_type(body), _fail(resp, "type")
        assert resp.headers.get("Content-Length") == str(len(body)), _fail(resp, "length")
        verify_digest(resp, dig)

    def manifest_head_exists(self, repo: str, ref: str, dig: str, body: bytes) -> None:
        resp = expect(self.c.head(f"/v2/{repo}/manifests/{ref}", headers=ACCEPT), 200)
        assert resp.content == b""
        assert resp.headers.get("Content-Type") == detect_media_type(body), _fail(resp, "type")
        assert resp.headers.get("Content-Length") == str(len(body)), _fail(resp, "length")
        verify_digest(resp, dig)

    def manifest_delete(self, repo: str, ref: str) -> None:
        expect(self.c.delete(f"/v2/{repo}/manifests/{ref}"), 202)
        # ManifestDeleteAtomic / TagDeleteAtomic
        expect(self.c.head(f"/v2/{repo}/manifests/{ref}", headers=ACCEPT), 404)

    # discovery
    def referrers(
        self, repo: str, subject: str, artifact_type: str | None = None
    ) -> httpx.Response:
        params = {"artifactType": artifact_type} if artifact_type is not None else None
        resp = expect(self.c.get(f"/v2/{repo}/referrers/{subject}", params=params), 200)
        assert resp.headers.get("Content-Type") == MT_INDEX, _fail(resp, "Content-Type")
        index = resp.json()
        assert index.get("mediaType") == MT_INDEX and index.get("schemaVersion") == 2, index
        return resp

    def tag_list(self, repo: str, last: str | None = None) -> list[str]:
        resp = self.c.get(f"/v2/{repo}/tags/list", params={"last": last} if last else None)
        expect(resp, 200, 404)
        if resp.status_code == 404:
            return []
        tags: list[str] = resp.json().get("tags") or []
        return tags
