"""A tiny Docker token service (distribution-docs/auth/token.md, jwt.md, oauth.md) for tests.

It signs ES256 JWTs with a fresh key whose self-signed certificate is written to
`rootcertbundle`, which is what `docker-registry`'s `auth.token` config trusts (the cert
travels in the JWT's `x5c` header). GET with Basic credentials (or anonymous, for `pull`
when `anonymous_pull`), POST with `grant_type=password` or `refresh_token`. Every request is
recorded, so tests can count token fetches and look at their scopes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.loopback_http import LoopbackHTTPServer

ISSUER = "pyreg-test-issuer"
SERVICE = "pyreg-test-registry"


@dataclass(frozen=True)
class TokenRequest:
    method: str
    scopes: tuple[str, ...]
    user: str | None  # who authenticated (None: anonymous)
    grant_type: str | None


class TokenServer:
    def __init__(
        self,
        workdir: Path,
        users: dict[str, str],
        *,
        expires_in: int = 300,
        anonymous_pull: bool = False,
    ) -> None:
        self.users = users
        self.expires_in = expires_in
        self.anonymous_pull = anonymous_pull
        self.requests: list[TokenRequest] = []
        self.refresh_tokens: dict[str, str] = {}
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pyreg test token signer")])
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(self._key, hashes.SHA256())
        )
        workdir.mkdir(parents=True, exist_ok=True)
        self.rootcertbundle = workdir / "token-root.pem"
        self.rootcertbundle.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._http = LoopbackHTTPServer(self._handler())

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self._http.port}/token"

    def __enter__(self) -> TokenServer:
        self._http.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.stop()

    def issue(self, user: str | None, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
            if user is None:
                actions = [a for a in actions if a == "pull" and self.anonymous_pull]
            access.append({"type": kind, "name": name, "actions": actions})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": SERVICE,
            "exp": now + self.expires_in,
            "nbf": now - 5,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        x5c = base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": [x5c]})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _basic_user(self) -> str | Literal[False] | None:
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return None
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                return user if server.users.get(user) == password else False

            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                scopes = query.get("scope", [])
                user = self._basic_user()
                server.requests.append(TokenRequest("GET", tuple(scopes), user or None, None))
                if user is False:
                    self._answer(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                    return
                token = server.issue(user or None, scopes)
                self._answer(
                    200,
                    {
                        "token": token,
                        "expires_in": server.expires_in,
                        "issued_at": dt.datetime.now(dt.UTC).isoformat(),
                    },
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                grant = form.get("grant_type", [""])[0]
                scopes = " ".join(form.get("scope", [])).split()
                user: str | None = None
                if grant == "password":
                    name = form.get("username", [""])[0]
                    if server.users.get(name) == form.get("password", [""])[0]:
                        user = name
                elif grant == "refresh_token":
                    user = server.refresh_tokens.get(form.get("refresh_token", [""])[0])
                server.requests.append(TokenRequest("POST", tuple(scopes), user, grant))
                if user is None:
                    self._answer(401, {"error": "invalid_grant"})
                    return
                refresh = uuid.uuid4().hex
                server.refresh_tokens[refresh] = user
                self._answer(
                    200,
                    {
                        "access_token": server.issue(user, scopes),
                        "expires_in": server.expires_in,
                        "refresh_token": refresh,
                    },
                )

        return Handler
