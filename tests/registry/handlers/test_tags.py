"""`GET /v2/<name>/tags/list` with `n`/`last` pagination and `Link`."""

from __future__ import annotations

import httpx
import pytest

from tests.registry.helpers import error_codes, push_blob, push_image, put_manifest

TAGS = ["B", "a", "latest", "v1.0", "v1.1", "v10", "v2", "_x"]


@pytest.fixture
async def tagged(client: httpx.AsyncClient) -> httpx.AsyncClient:
    data, _ = await push_image(client, "r/s")
    for tag in TAGS:
        assert (await put_manifest(client, "r/s", tag, data)).status_code == 201
    return client


async def test_lists_all_tags_in_byte_order(tagged: httpx.AsyncClient) -> None:
    response = await tagged.get("/v2/r/s/tags/list")
    assert response.status_code == 200
    assert response.json() == {"name": "r/s", "tags": sorted(TAGS)}
    assert "link" not in response.headers


async def test_pagination_follows_link_headers(tagged: httpx.AsyncClient) -> None:
    seen: list[str] = []
    url = "/v2/r/s/tags/list?n=3"
    while True:
        response = await tagged.get(url)
        page = response.json()["tags"]
        assert len(page) <= 3
        seen += page
        link = response.headers.get("link")
        if link is None:
            break
        assert link.endswith('>; rel="next"')
        url = link[1 : link.index(">")]
        assert url.startswith("/v2/r/s/tags/list?n=3&last=")
    assert seen == sorted(TAGS)


async def test_last_is_exclusive_and_n_optional(tagged: httpx.AsyncClient) -> None:
    response = await tagged.get("/v2/r/s/tags/list?last=latest")
    assert response.json()["tags"] == [t for t in sorted(TAGS) if t > "latest"]
    response = await tagged.get("/v2/r/s/tags/list?n=2&last=B")
    assert response.json()["tags"] == [t for t in sorted(TAGS) if t > "B"][:2]


async def test_exact_page_size_has_no_link(tagged: httpx.AsyncClient) -> None:
    response = await tagged.get(f"/v2/r/s/tags/list?n={len(TAGS)}")
    assert len(response.json()["tags"]) == len(TAGS)
    assert "link" not in response.headers


async def test_n_zero_is_empty_without_link(tagged: httpx.AsyncClient) -> None:
    response = await tagged.get("/v2/r/s/tags/list?n=0")
    assert response.json()["tags"] == []
    assert "link" not in response.headers


@pytest.mark.parametrize("n", ["-1", "abc", "1.5", "99999999999999999999"])
async def test_invalid_n_is_400(tagged: httpx.AsyncClient, n: str) -> None:
    response = await tagged.get(f"/v2/r/s/tags/list?n={n}")
    assert response.status_code == 400
    assert error_codes(response) == ["PAGINATION_NUMBER_INVALID"]


async def test_unknown_repository_is_name_unknown(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/nothing/here/tags/list")
    assert response.status_code == 404
    assert error_codes(response) == ["NAME_UNKNOWN"]


async def test_repository_without_tags_lists_empty(client: httpx.AsyncClient) -> None:
    await push_blob(client, "blobs-only", b"x")
    response = await client.get("/v2/blobs-only/tags/list")
    assert response.status_code == 200
    assert response.json() == {"name": "blobs-only", "tags": []}


@pytest.mark.parametrize("tags", [[], ["a"], sorted(TAGS), [f"t{i:05d}" for i in range(1000)]])
def test_plain_tags_body_is_what_the_json_encoder_writes(tags: list[str]) -> None:
    from starlette.responses import JSONResponse

    from registry.handlers.tags import tags_json

    assert tags_json("r/s-1.x_y", tags) == JSONResponse({"name": "r/s-1.x_y", "tags": tags}).body


@pytest.mark.parametrize("odd", ['a"b', "a\\b", "caf\u00e9", "a\x01", "a b", "a\u2028"])
def test_a_name_json_would_escape_takes_the_encoder(odd: str) -> None:
    # storage may hold a stray name no tag can have: it must still come out as valid JSON
    from registry.handlers.tags import tags_json

    assert tags_json("r/s", ["a", odd]) is None
