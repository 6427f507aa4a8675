"""Small request helpers shared by the conformance ports (reggie's helpers, in httpx terms)."""

from __future__ import annotations

from typing import Any

import httpx


def location(resp: httpx.Response) -> str:
    """The Location header, which the spec lets be absolute or relative; httpx resolves both
    against the client's base URL."""
    value: str = resp.headers.get("location", "")
    assert value, f"{resp.request.method} {resp.request.url}: no Location ({resp.status_code})"
    return value


def with_query(url: str, **params: str) -> httpx.URL:
    """`url` plus query parameters, keeping the ones it has: a registry may carry upload
    state in the Location's query (distribution's `_state`), which httpx's `params=` would
    drop."""
    return httpx.URL(url).copy_merge_params(params)


def is_2xx(resp: httpx.Response) -> bool:
    return 200 <= resp.status_code < 300


def error_codes(resp: httpx.Response) -> list[str]:
    """The `code`s of the spec's error body; fails when the body is not that shape."""
    body: Any = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("errors"), list), body
    codes = [e["code"] for e in body["errors"]]
    assert codes, body
    return codes


def push_blob(client: httpx.Client, repo: str, content: bytes, digest: str) -> httpx.Response:
    """POST then PUT with the whole blob: the setup steps of every workflow."""
    resp = client.post(f"/v2/{repo}/blobs/uploads/")
    return client.put(
        with_query(location(resp), digest=digest),
        headers={"Content-Type": "application/octet-stream"},
        content=content,
    )


def put_manifest(
    client: httpx.Client, repo: str, ref: str, content: bytes, media_type: str
) -> httpx.Response:
    return client.put(
        f"/v2/{repo}/manifests/{ref}", headers={"Content-Type": media_type}, content=content
    )
