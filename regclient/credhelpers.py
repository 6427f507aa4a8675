"""Docker credential helpers: `docker-credential-NAME get|store|erase` on PATH.

The protocol (github.com/docker/docker-credential-helpers): `get` and `erase` read the server
URL on stdin; `store` reads `{"ServerURL", "Username", "Secret"}`; `get` answers that JSON on
stdout, or fails with "credentials not found" when it has none. A `Username` of `<token>`
means `Secret` is an identity token (docker's convention).
"""

from __future__ import annotations

import json
import shutil
import subprocess

from regclient.credentials import Credentials, CredentialsError

TIMEOUT = 60.0  # a helper may ask a keyring or gpg-agent; never forever
TOKEN_USER = "<token>"


class HelperMissing(CredentialsError):
    """The named helper is not installed."""


def _program(name: str) -> str:
    program = f"docker-credential-{name}"
    found = shutil.which(program)
    if found is None:
        raise HelperMissing(f"the credential helper {program} is not on PATH")
    return found


def _run(name: str, action: str, stdin: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [_program(name), action],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CredentialsError(
            f"credential helper docker-credential-{name} {action}: no answer in {TIMEOUT:.0f} s"
        ) from None
    except OSError as exc:
        raise CredentialsError(f"credential helper docker-credential-{name}: {exc}") from None


def _failure(name: str, action: str, done: subprocess.CompletedProcess[str]) -> CredentialsError:
    said = (done.stdout.strip() or done.stderr.strip()).splitlines()
    detail = said[0] if said else f"exit status {done.returncode}"
    return CredentialsError(f"credential helper docker-credential-{name} {action}: {detail}")


def _not_found(done: subprocess.CompletedProcess[str]) -> bool:
    return "credentials not found" in (done.stdout + done.stderr).lower()


def get(name: str, server: str) -> Credentials | None:
    done = _run(name, "get", server)
    if done.returncode != 0:
        if _not_found(done):
            return None
        raise _failure(name, "get", done)
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        raise CredentialsError(
            f"credential helper docker-credential-{name} get: not JSON"
        ) from None
    if not isinstance(answer, dict):
        raise CredentialsError(f"credential helper docker-credential-{name} get: not an object")
    user, secret = answer.get("Username"), answer.get("Secret")
    if not isinstance(secret, str) or not secret:
        return None
    if user == TOKEN_USER:
        return Credentials(identity_token=secret)
    return Credentials(username=user if isinstance(user, str) else None, password=secret)


def store(name: str, server: str, username: str, secret: str) -> None:
    body = json.dumps({"ServerURL": server, "Username": username, "Secret": secret})
    done = _run(name, "store", body)
    if done.returncode != 0:
        raise _failure(name, "store", done)


def erase(name: str, server: str) -> bool:
    """False when the helper had nothing for `server`."""
    done = _run(name, "erase", server)
    if done.returncode != 0:
        if _not_found(done):
            return False
        raise _failure(name, "erase", done)
    return True
