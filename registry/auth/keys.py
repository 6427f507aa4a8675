"""The token signing key: loaded from a PEM file, or generated once and kept.

An EC P-256 key signs with ES256, an RSA key (>= 2048 bits) with RS256; the algorithm follows
from the key and is the only one the verifier accepts (no `none`, no HMAC key confusion).
Without `auth.key` in the config the key lives in the storage backend, so every replica sharing
the storage signs and verifies with the same key.

Whoever reads the key can forge any token: key files are written 0600 (on the filesystem
backend too), and start-up warns when the key file can be read by group or others.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from registry.stores.paths import AUTH_KEY
from storage_backends.base import NotFound, StorageBackend
from storage_backends.filesystem import FilesystemBackend

logger = logging.getLogger("registry.auth")

# Storage key of the generated signing key when `auth.key` is not set.
STORAGE_KEY_PATH = AUTH_KEY

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class SigningKeyError(ValueError):
    """An unusable signing key."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    private: PrivateKey
    algorithm: str  # "ES256" or "RS256"
    kid: str

    @property
    def public(self) -> PublicKey:
        return self.private.public_key()


def key_id(public: PublicKey) -> str:
    """libtrust's key ID, as distribution writes into `kid`: base32 of the SPKI's SHA-256
    (first 240 bits), in 12 groups of 4 separated by colons."""
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[i : i + 4] for i in range(0, 48, 4))


def from_pem(pem: bytes) -> SigningKey:
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"cannot read the token signing key: {exc}") from None
    if isinstance(private, ec.EllipticCurvePrivateKey):
        if not isinstance(private.curve, ec.SECP256R1):
            raise SigningKeyError("EC token keys must use the P-256 curve (ES256)")
        return SigningKey(private, "ES256", key_id(private.public_key()))
    if isinstance(private, rsa.RSAPrivateKey):
        if private.key_size < 2048:
            raise SigningKeyError("RSA token keys must have at least 2048 bits")
        return SigningKey(private, "RS256", key_id(private.public_key()))
    raise SigningKeyError("the token signing key must be an EC P-256 or RSA private key")


def generate_pem() -> bytes:
    private = ec.generate_private_key(ec.SECP256R1())
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def warn_if_exposed(path: Path) -> bool:
    """Log a warning when the key file at `path` is readable by group or others; True then."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return False
    logger.warning(
        "the token signing key %s is readable by others (mode %04o): anyone who can read it "
        "can forge tokens. chmod 600 it, and replace it if it may have been read.",
        path,
        stat.S_IMODE(mode),
    )
    return True


def load_or_create_file(path: Path) -> SigningKey:
    """Read the key at `path`, creating it (mode 0600, never overwriting) on first start."""
    try:
        key = from_pem(path.read_bytes())
    except FileNotFoundError:
        pass
    else:
        warn_if_exposed(path)
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = generate_pem()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return from_pem(path.read_bytes())
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    return from_pem(pem)


async def load_or_create_stored(backend: StorageBackend, settle: float = 0.5) -> SigningKey:
    """The key kept in storage, generated on the very first start.

    Several workers or replicas may start together on empty storage and each write a key. The
    backend has no create-if-absent, so each writer waits `settle` seconds and then adopts
    whatever key was written last: all of them end up with the same one.
    """
    local = _local_file(backend)
    try:
        key = from_pem(await backend.get(STORAGE_KEY_PATH))
    except NotFound:
        pass
    else:
        if local is not None:
            warn_if_exposed(local)
        return key
    await backend.put(STORAGE_KEY_PATH, generate_pem())
    if local is not None:
        # The backend writes objects with the process umask (0644 usually); the storage root
        # is 0700, but the key must not depend on that (a root created by someone else).
        await anyio.to_thread.run_sync(_restrict, local)
    await anyio.sleep(settle)
    return from_pem(await backend.get(STORAGE_KEY_PATH))


def _local_file(backend: StorageBackend) -> Path | None:
    """Where the stored key lies on the local disk, for the filesystem backend."""
    if isinstance(backend, FilesystemBackend):
        return backend.root / STORAGE_KEY_PATH
    return None


def _restrict(path: Path) -> None:
    try:
        os.chmod(path, 0o600)
    except FileNotFoundError:  # another replica's write replaced it: it restricts its own
        pass
