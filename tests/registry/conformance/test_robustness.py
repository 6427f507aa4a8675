"""Malformed requests at every route of a real `pyreg serve` process: bad names, bad digests,
bad JSON, wrong content types, garbage Content-Range and Content-Length, negative and huge
`n`, invalid UTF-8 in paths and queries, huge headers. Every answer must be a 4xx with the
spec's JSON error body (`{"errors": [{"code", "message", "detail"}]}`), never a 5xx.

A table of named cases covers each route by hand; hypothesis then throws generated input at
the same routes. One exception, checked on its own: a request line with raw non-ASCII bytes
is not HTTP (RFC 9112 wants an ASCII request-target), so uvicorn's parser answers 400 in
plain text before any route runs.
"""

from __future__ import annotations

import hashlib
import os
import socket
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.registry.conformance.legacy_data import OCI_INDEX, OCI_MANIFEST
from tests.registry.conformance.requests import with_query
from tests.registry.conformance.targets import Target

REPO = "robust/app"
# The spec's codes, plus the two distribution uses for pagination and ranges.
CODES = {
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
    "PAGINATION_NUMBER_INVALID",
    "RANGE_INVALID",
}
BLOB = b"robustness blob"
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
MISSING = "sha256:" + hashlib.sha256(b"never pushed").hexdigest()
OCTET = {"Content-Type": "application/octet-stream"}
FUZZ = settings(
    max_examples=int(os.environ.get("PYREG_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def assert_spec_error(resp: httpx.Response) -> None:
    request = f"{resp.request.method} {resp.request.url}"
    assert 400 <= resp.status_code < 500, f"{request} -> {resp.status_code} {resp.text[:300]}"
    assert resp.headers.get("content-type", "").startswith("application/json"), request
    body: Any = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("errors"), list), (request, body)
    assert body["errors"], (request, body)
    for error in body["errors"]:
        assert set(error) >= {"code", "message"}, (request, error)
        assert error["code"] in CODES, (request, error)
        assert isinstance(error["message"], str)


@pytest.fixture(scope="module")
def pushed(client: httpx.Client) -> None:
    resp = client.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": BLOB_DIGEST}, content=BLOB)
    assert resp.status_code == 201


@pytest.fixture
def session(client: httpx.Client, pushed: None) -> str:
    """A fresh upload session to aim at (a refused digest ends a session, by design)."""
    resp = client.post(f"/v2/{REPO}/blobs/uploads/")
    assert resp.status_code == 202
    location: str = resp.headers["Location"]
    return location


def _manifest(body: dict[str, Any]) -> bytes:
    import json

    return json.dumps(body).encode()


GOOD_CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(BLOB)}

# (id, method, path, kwargs); `{upload}` is replaced by the open session's path.
CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    # names
    ("upper-case name", "GET", "/v2/Robust/App/tags/list", {}),
    ("dot-dot name", "GET", "/v2/robust/../app/tags/list", {}),
    ("encoded slash", "GET", "/v2/robust%2Fapp/tags/list", {}),
    ("leading separator", "GET", "/v2/-robust/tags/list", {}),
    ("double separator", "GET", "/v2/robust__-x/tags/list", {}),
    ("name too long", "GET", "/v2/" + "a" * 300 + "/tags/list", {}),
    ("space in name", "GET", "/v2/robust%20app/tags/list", {}),
    ("invalid utf-8 in name", "GET", "/v2/robust%ff%fe/tags/list", {}),
    ("nul in name", "GET", "/v2/robust%00/tags/list", {}),
    ("unicode name", "GET", "/v2/r%C3%A9seau/manifests/latest", {}),
    ("bad name on upload", "POST", "/v2/UP/blobs/uploads/", {}),
    ("bad name on referrers", "GET", f"/v2/a..b/referrers/{MISSING}", {}),
    # digests
    ("short sha256", "GET", f"/v2/{REPO}/blobs/sha256:abc", {}),
    ("unknown algorithm", "GET", f"/v2/{REPO}/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", {}),
    ("upper-case hex", "GET", f"/v2/{REPO}/blobs/sha256:{'A' * 64}", {}),
    ("sha512 of sha256 length", "GET", f"/v2/{REPO}/blobs/sha512:{'a' * 64}", {}),
    ("no algorithm", "DELETE", f"/v2/{REPO}/blobs/{'a' * 64}", {}),
    ("invalid utf-8 digest", "GET", f"/v2/{REPO}/blobs/sha256:%ff%fe", {}),
    ("bad manifest digest", "GET", f"/v2/{REPO}/manifests/sha256:zz", {}),
    ("bad referrers digest", "GET", f"/v2/{REPO}/referrers/sha256:nothex", {}),
    ("bad tag on put", "PUT", f"/v2/{REPO}/manifests/-tag", {"content": b"{}"}),
    ("tag too long", "PUT", f"/v2/{REPO}/manifests/{'t' * 200}", {"content": b"{}"}),
    ("bad digest on monolithic post", "POST", f"/v2/{REPO}/blobs/uploads/?digest=sha256:1", {}),
    ("bad digest on put", "PUT", "{upload}?digest=sha256:xyz", {"content": b"x"}),
    ("missing digest on put", "PUT", "{upload}", {"content": b"x"}),
    ("wrong digest on put", "PUT", f"{{upload}}?digest={MISSING}", {"content": b"x"}),
    ("bad mount digest", "POST", f"/v2/{REPO}/blobs/uploads/?mount=sha256:1&from={REPO}", {}),
    ("unknown blob", "GET", f"/v2/{REPO}/blobs/{MISSING}", {}),
    # uploads
    ("unknown upload", "GET", f"/v2/{REPO}/blobs/uploads/00000000-0000-0000-0000-000000000000", {}),
    ("garbage upload id", "PATCH", f"/v2/{REPO}/blobs/uploads/..%2F..%2Fetc", {"content": b"x"}),
    ("dot upload id", "GET", f"/v2/{REPO}/blobs/uploads/..", {}),
    ("nul in upload id", "DELETE", f"/v2/{REPO}/blobs/uploads/%00", {}),
    ("upload of another repo", "GET", "/v2/robust/other/blobs/uploads/{upload_id}", {}),
    ("content-range garbage", "PATCH", "{upload}", {"content": b"x", "cr": "garbage"}),
    ("content-range inverted", "PATCH", "{upload}", {"content": b"xy", "cr": "5-2"}),
    ("content-range negative", "PATCH", "{upload}", {"content": b"x", "cr": "-1-0"}),
    ("content-range huge", "PATCH", "{upload}", {"content": b"x", "cr": "0-" + "9" * 40}),
    ("content-range not at offset", "PATCH", "{upload}", {"content": b"x", "cr": "7-7"}),
    ("content-range length mismatch", "PATCH", "{upload}", {"content": b"xyz", "cr": "0-0"}),
    ("content-range other unit", "PATCH", "{upload}", {"content": b"x", "cr": "items=0-0"}),
    ("content-range two ranges", "PATCH", "{upload}", {"content": b"xy", "cr": "0-0,1-1"}),
    ("huge content-range header", "PATCH", "{upload}", {"content": b"x", "cr": "0-" * 4000}),
    # manifests
    ("not json", "PUT", f"/v2/{REPO}/manifests/t", {"content": b"not json"}),
    ("invalid utf-8 json", "PUT", f"/v2/{REPO}/manifests/t", {"content": b'{"a": "\xff\xfe"}'}),
    ("json array", "PUT", f"/v2/{REPO}/manifests/t", {"content": b"[]"}),
    ("json null", "PUT", f"/v2/{REPO}/manifests/t", {"content": b"null"}),
    ("empty body", "PUT", f"/v2/{REPO}/manifests/t", {"content": b""}),
    (
        "schema version 1",
        "PUT",
        f"/v2/{REPO}/manifests/t",
        {"content": _manifest({"schemaVersion": 1, "mediaType": OCI_MANIFEST})},
    ),
    (
        "config without digest",
        "PUT",
        f"/v2/{REPO}/manifests/t",
        {"content": _manifest({"schemaVersion": 2, "config": GOOD_CONFIG, "layers": []})},
    ),
    (
        "layers not a list",
        "PUT",
        f"/v2/{REPO}/manifests/t",
        {
            "content": _manifest(
                {
                    "schemaVersion": 2,
                    "config": {**GOOD_CONFIG, "digest": BLOB_DIGEST},
                    "layers": {"a": 1},
                }
            )
        },
    ),
    (
        "negative size",
        "PUT",
        f"/v2/{REPO}/manifests/t",
        {
            "content": _manifest(
                {
                    "schemaVersion": 2,
                    "config": {**GOOD_CONFIG, "digest": BLOB_DIGEST, "size": -1},
                    "layers": [],
                }
            )
        },
    ),
    (
        "missing blob",
        "PUT",
        f"/v2/{REPO}/manifests/t",
        {
            "content": _manifest(
                {"schemaVersion": 2, "config": {**GOOD_CONFIG, "digest": MISSING}, "layers": []}
            )
        },
    ),
    (
        "index sent as manifest",
        "PUT",
        f"/v2/{REPO}/manifests/t",
        {"content": _manifest({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})},
    ),
    (
        "content type text/plain",
        "PUT",
        f"/v2/{REPO}/manifests/t",
        {"content": _manifest({"schemaVersion": 2}), "ct": "text/plain"},
    ),
    (
        "content type unknown",
        "PUT",
        f"/v2/{REPO}/manifests/t",
        {"content": b'{"schemaVersion": 2}', "ct": "application/x-whatever"},
    ),
    (
        "huge content type header",
        "PUT",
        f"/v2/{REPO}/manifests/t",
        {"content": b'{"schemaVersion": 2}', "ct": "application/" + "x" * 8000},
    ),
    (
        "deep json",
        "PUT",
        f"/v2/{REPO}/manifests/t",
        {"content": b"[" * 50_000 + b"]" * 50_000},
    ),
    ("manifest over 4 MiB", "PUT", f"/v2/{REPO}/manifests/t", {"content": b" " * (4 << 20 | 1)}),
    ("tag param on tag push", "PUT", f"/v2/{REPO}/manifests/t?tag=x", {"content": b"{}"}),
    ("bad tag param", "PUT", f"/v2/{REPO}/manifests/{MISSING}?tag=-x", {"content": b"{}"}),
    ("unknown manifest", "GET", f"/v2/{REPO}/manifests/nope", {}),
    ("delete unknown manifest", "DELETE", f"/v2/{REPO}/manifests/{MISSING}", {}),
    # pagination
    ("negative n tags", "GET", f"/v2/{REPO}/tags/list?n=-1", {}),
    ("huge n tags", "GET", f"/v2/{REPO}/tags/list?n={'9' * 40}", {}),
    ("text n tags", "GET", f"/v2/{REPO}/tags/list?n=ten", {}),
    ("superscript digit n tags", "GET", f"/v2/{REPO}/tags/list?n=%C2%B2", {}),
    ("arabic-indic digit n catalog", "GET", "/v2/_catalog?n=%D9%A3", {}),
    ("float n catalog", "GET", "/v2/_catalog?n=1.5", {}),
    ("negative n catalog", "GET", "/v2/_catalog?n=-10", {}),
    ("huge n catalog", "GET", f"/v2/_catalog?n={'9' * 40}", {}),
    # routes and methods
    ("unknown route", "GET", "/v2/robust/app/nothing/here", {}),
    ("method not allowed on base", "DELETE", "/v2/", {}),
    ("method not allowed on blob", "PUT", f"/v2/{REPO}/blobs/{BLOB_DIGEST}", {}),
    ("method not allowed on tags", "POST", f"/v2/{REPO}/tags/list", {}),
    ("method not allowed on catalog", "PATCH", "/v2/_catalog", {}),
]


def _send(
    client: httpx.Client, upload: str, method: str, path: str, kw: dict[str, Any]
) -> httpx.Response:
    upload_path = httpx.URL(upload).path
    path = path.replace("{upload_id}", upload_path.rsplit("/", 1)[-1]).replace(
        "{upload}", upload_path
    )
    headers: dict[str, str] = {}
    if "cr" in kw:
        headers["Content-Range"] = kw["cr"]
    if "ct" in kw:
        headers["Content-Type"] = kw["ct"]
    elif method in ("PUT", "PATCH", "POST"):
        headers["Content-Type"] = OCI_MANIFEST if "/manifests/" in path else OCTET["Content-Type"]
    return client.request(method, path, headers=headers, content=kw.get("content", b""))


@pytest.mark.parametrize(
    ("method", "path", "kw"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_request_gets_a_spec_error(
    client: httpx.Client, session: str, method: str, path: str, kw: dict[str, Any]
) -> None:
    assert_spec_error(_send(client, session, method, path, kw))


def test_refused_chunks_leave_the_session_usable(client: httpx.Client, session: str) -> None:
    """Garbage Content-Range chunks are refused without moving the session: it still takes
    the blob from offset zero."""
    for case in CASES:
        if "cr" in case[3]:
            resp = client.patch(
                session,
                headers={**OCTET, "Content-Range": case[3]["cr"]},
                content=case[3]["content"],
            )
            assert_spec_error(resp)
    assert client.get(session).status_code == 204
    done = client.put(with_query(session, digest=BLOB_DIGEST), headers=OCTET, content=BLOB)
    assert done.status_code == 201, done.text


@pytest.mark.parametrize("source", ["../a", "A/B", "x" * 300, "%00"])
def test_mount_from_an_invalid_name_is_not_an_error(client: httpx.Client, source: str) -> None:
    """As distribution, a `from` that names no repository is ignored: the blob exists in the
    registry, so pyreg mounts it anonymously (201) or opens a normal session (202)."""
    params = {"mount": BLOB_DIGEST, "from": source}
    resp = client.post("/v2/robust/mounted/blobs/uploads/", params=params)
    assert resp.status_code in (201, 202), resp.text


@pytest.mark.parametrize(
    "header", ["bytes=abc", "bytes=-", "items=0-1", "bytes=0-1,3-4", "bytes=5-2", "bytes=99-"]
)
def test_malformed_range_is_ignored_or_refused(client: httpx.Client, header: str) -> None:
    """RFC 9110 lets a server ignore a Range it cannot use: a full 200, or a 416 spec error."""
    resp = client.get(f"/v2/{REPO}/blobs/{BLOB_DIGEST}", headers={"Range": header})
    if resp.status_code == 200:
        assert resp.content == BLOB
    else:
        assert resp.status_code == 416
        assert_spec_error(resp)


def _raw(registry: Target, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", registry.port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /v2/a\xff\xfe/tags/list HTTP/1.1\r\n",
        b"GET /v2/_catalog?last=\xff HTTP/1.1\r\n",
        b"PATCH /v2/robust/app/blobs/uploads/x HTTP/1.1\r\nContent-Length: abc\r\n",
        b"PATCH /v2/robust/app/blobs/uploads/x HTTP/1.1\r\nContent-Length: -5\r\n",
        b"PATCH /v2/robust/app/blobs/uploads/x HTTP/1.1\r\nContent-Length: 1, 2\r\n",
    ],
    ids=["non-ascii path", "non-ascii query", "content-length text", "negative", "list"],
)
def test_requests_that_are_not_http_are_refused_by_the_http_parser(
    registry: Target, request_head: bytes
) -> None:
    """Raw non-ASCII in the request line or a malformed Content-Length is not HTTP: uvicorn's
    parser answers 400 (plain text) and closes before any route runs; never a 5xx."""
    reply = _raw(registry, request_head + b"Host: x\r\nConnection: close\r\n\r\nx")
    assert reply.startswith(b"HTTP/1.1 400 "), reply[:200]


# Generated input: hypothesis drives the same routes with arbitrary text and bytes.
NAMES = st.text(min_size=1, max_size=80).filter(lambda s: s not in (".", ".."))


def _quote(text: str, safe: str = "") -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe=safe)


@FUZZ
@given(name=NAMES, tail=st.sampled_from(["tags/list", "manifests/latest", f"blobs/{MISSING}"]))
def test_fuzz_names(client: httpx.Client, name: str, tail: str) -> None:
    resp = client.get(f"/v2/{_quote(name, safe='/')}/{tail}")
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert_spec_error(resp)


@FUZZ
@given(
    digest=st.one_of(
        st.text(max_size=140),
        st.from_regex(r"\A[a-z0-9]{1,10}:[A-Za-z0-9=_-]{1,140}\Z"),
    ),
    route=st.sampled_from(["blobs", "manifests", "referrers"]),
)
def test_fuzz_digests(client: httpx.Client, digest: str, route: str) -> None:
    resp = client.get(f"/v2/{REPO}/{route}/{_quote(digest)}")
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert_spec_error(resp)


@FUZZ
@given(n=st.text(max_size=30), last=st.text(max_size=30), catalog=st.booleans())
def test_fuzz_pagination(client: httpx.Client, n: str, last: str, catalog: bool) -> None:
    path = "/v2/_catalog" if catalog else f"/v2/{REPO}/tags/list"
    resp = client.get(f"{path}?n={_quote(n)}&last={_quote(last)}")
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert_spec_error(resp)


@FUZZ
@given(
    content_range=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40
    ),
    body=st.binary(max_size=64),
)
def test_fuzz_content_range(client: httpx.Client, content_range: str, body: bytes) -> None:
    start = client.post(f"/v2/{REPO}/blobs/uploads/")
    resp = client.patch(
        start.headers["Location"],
        headers={**OCTET, "Content-Range": content_range},
        content=body,
    )
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert_spec_error(resp)
    client.delete(start.headers["Location"])


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    ["schemaVersion", "mediaType", "config", "layers", "manifests", "subject",
                     "digest", "size", "artifactType", "annotations", "urls", "data"]
                ),
                inner,
                max_size=6,
            ),
            max_leaves=20,
        ).map(lambda v: _manifest(v) if isinstance(v, dict) else str(v).encode()),
    ),
    content_type=st.sampled_from(
        [OCI_MANIFEST, OCI_INDEX, "application/json", "text/plain", "", "a/b; c=\"d\""]
    ),
)  # fmt: skip
def test_fuzz_manifest_bodies(client: httpx.Client, body: bytes, content_type: str) -> None:
    resp = client.put(
        f"/v2/{REPO}/manifests/fuzz", headers={"Content-Type": content_type}, content=body
    )
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert_spec_error(resp)


@FUZZ
@given(
    reference=st.text(min_size=1, max_size=140).filter(lambda s: s not in (".", "..")),
    method=st.sampled_from(["GET", "HEAD", "DELETE", "PUT"]),
)
def test_fuzz_manifest_references(client: httpx.Client, reference: str, method: str) -> None:
    resp = client.request(
        method,
        f"/v2/{REPO}/manifests/{_quote(reference)}",
        headers={"Content-Type": OCI_MANIFEST},
        content=b"{}" if method == "PUT" else b"",
    )
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400 and method != "HEAD":
        assert_spec_error(resp)


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["digest", "mount", "from", "digest-algorithm", "tag", "_state"]),
        st.text(max_size=80),
        max_size=4,
    ),
    body=st.binary(max_size=32),
)
def test_fuzz_upload_parameters(client: httpx.Client, params: dict[str, str], body: bytes) -> None:
    query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params.items())
    resp = client.post(f"/v2/{REPO}/blobs/uploads/?{query}", headers=OCTET, content=body)
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert_spec_error(resp)
    if resp.status_code == 202:
        # and the same parameters on the PUT that closes the session
        put = client.put(f"{resp.headers['Location']}?{query}", headers=OCTET, content=body)
        assert put.status_code < 500, put.text
        if put.status_code >= 400:
            assert_spec_error(put)
