from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import anyio
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from registry.auth.keys import (
    STORAGE_KEY_PATH,
    SigningKeyError,
    from_pem,
    key_id,
    load_or_create_file,
    load_or_create_stored,
)
from storage_backends.filesystem import FilesystemBackend
from storage_backends.memory import MemoryBackend


def _pem(private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_generated_key_is_kept_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "token.pem"
    first = load_or_create_file(path)
    assert first.algorithm == "ES256"
    assert (path.stat().st_mode & 0o777) == 0o600
    second = load_or_create_file(path)
    assert second.kid == first.kid  # the same key on the next start


async def test_generated_key_is_kept_in_storage() -> None:
    backend = MemoryBackend()
    first = await load_or_create_stored(backend)
    assert await backend.exists(STORAGE_KEY_PATH)
    second = await load_or_create_stored(backend)
    assert second.kid == first.kid


def test_rsa_keys_sign_with_rs256() -> None:
    key = from_pem(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    assert key.algorithm == "RS256"


@pytest.mark.parametrize(
    "pem",
    [
        b"not a key",
        _pem(ec.generate_private_key(ec.SECP384R1())),
        _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
    ],
)
def test_unusable_keys_are_refused(pem: bytes) -> None:
    with pytest.raises(SigningKeyError):
        from_pem(pem)


def test_kid_is_libtrust_shaped() -> None:
    kid = key_id(ec.generate_private_key(ec.SECP256R1()).public_key())
    groups = kid.split(":")
    assert len(groups) == 12 and all(len(g) == 4 and g.isalnum() for g in groups)


class SlowBackend(MemoryBackend):
    """Real backends yield on every call; this one does too, so racers interleave."""

    async def get(self, path: str) -> bytes:
        await anyio.sleep(0.01)
        return await super().get(path)

    async def put(self, path: str, data: bytes) -> None:
        await anyio.sleep(random.random() / 50)
        await super().put(path, data)


async def test_workers_starting_together_agree_on_one_stored_key() -> None:
    backend = SlowBackend()
    kids: list[str] = []

    async def start() -> None:
        kids.append((await load_or_create_stored(backend, settle=0.2)).kid)

    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(start)
    assert len(kids) == 4 and len(set(kids)) == 1


async def test_a_key_kept_on_the_filesystem_backend_is_0600(tmp_path: Path) -> None:
    """`_auth/token-key.pem` was written 0644: under a 0755 storage root (the shipped image's)
    any local user could read it and forge tokens."""
    backend = FilesystemBackend(tmp_path / "storage")
    await backend.open()
    old = os.umask(0o022)  # the usual umask, whatever the test runner's
    try:
        await load_or_create_stored(backend, settle=0)
    finally:
        os.umask(old)
    mode = (tmp_path / "storage" / STORAGE_KEY_PATH).stat().st_mode & 0o777
    assert mode == 0o600


async def test_start_up_warns_about_a_key_others_can_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "token.pem"
    load_or_create_file(path)
    caplog.set_level(logging.WARNING, logger="registry.auth")
    load_or_create_file(path)
    assert not [r for r in caplog.records if "readable by others" in r.getMessage()]
    path.chmod(0o644)
    load_or_create_file(path)
    assert [r for r in caplog.records if "readable by others" in r.getMessage()]
    caplog.clear()
    backend = FilesystemBackend(tmp_path / "storage")
    await backend.open()
    await load_or_create_stored(backend, settle=0)
    (tmp_path / "storage" / STORAGE_KEY_PATH).chmod(0o640)
    await load_or_create_stored(backend, settle=0)
    assert [r for r in caplog.records if "readable by others" in r.getMessage()]
