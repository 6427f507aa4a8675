"""The conformance suite's client authentication (`getAuthHeader` and the auth cache in
conformance/api.go) as an `httpx.Auth`: on a 401, Basic credentials, or a token fetched from
the Bearer challenge's realm with its service and scope; the header is then cached per
registry, repository and kind of request (pull for GET/HEAD, push for POST/PATCH/PUT), as
with the suite's default OCI_CACHE_AUTH=true."""

from __future__ import annotations

import re
from collections.abc import Generator

import httpx

from regclient.auth import basic_header, parse_www_authenticate

# the suite's reRepo: the repository part of a /v2/ path
_REPO_RE = re.compile(
    r"/v2/([a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*)"
    r"(/(?:blobs|manifests|tags|referrers)/(?:[^/]+)|/blobs/uploads/[^/]*)"
)
_KIND = {"GET": "pull", "HEAD": "pull", "POST": "push", "PATCH": "push", "PUT": "push"}


def cache_key(request: httpx.Request) -> str:
    path = request.url.path
    match = _REPO_RE.search(path) if path != "/v2/" else None
    repo = match.group(1) if match else ""
    return ":".join([request.url.netloc.decode(), repo, _KIND.get(request.method, request.method)])


class SuiteAuth(httpx.Auth):
    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        self.cache: dict[str, str] = {}
        self.token_fetches = 0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        key = cache_key(request)
        if key in self.cache:
            request.headers["Authorization"] = self.cache[key]
        response = yield request
        if response.status_code != 401:
            return
        challenges = parse_www_authenticate(response.headers.get("WWW-Authenticate", ""))
        if not challenges:
            return
        challenge = challenges[0]
        if challenge.scheme == "basic":
            header = basic_header(self.username, self.password)
        else:
            params = {"service": challenge.params.get("service", "")}
            if scope := challenge.params.get("scope"):
                params["scope"] = scope
            realm = request.url.join(challenge.params["realm"])
            reply = httpx.get(
                realm,
                params=params,
                headers={
                    "Accept": "application/json",
                    "Authorization": basic_header(self.username, self.password),
                },
            )
            assert reply.status_code == 200, f"token request refused: {reply.text}"
            self.token_fetches += 1
            body = reply.json()
            header = f"Bearer {body.get('access_token') or body['token']}"
        self.cache[key] = header
        request.headers["Authorization"] = header
        yield request
