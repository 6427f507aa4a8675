"""Content digests (`algorithm:hex`) and a streaming verifier.

Only the algorithms the image spec registers are accepted: sha256 and sha512.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

# algorithm -> (hashlib constructor name, hex length)
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}

# The grammar from the image spec (descriptor.md); we then restrict to registered algorithms.
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_HEX_RE = re.compile(r"^[a-f0-9]+$")


class DigestError(ValueError):
    """A string that is not a valid, supported digest."""


class DigestMismatch(ValueError):
    """Content whose digest or size is not the one it was announced with."""

    def __init__(self, expected: Digest, actual: Digest, message: str | None = None) -> None:
        super().__init__(message or f"digest mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: str) -> Digest:
        if not isinstance(value, str) or not _DIGEST_RE.fullmatch(value):
            raise DigestError(f"invalid digest: {value!r}")
        algorithm, _, hexpart = value.partition(":")
        length = ALGORITHMS.get(algorithm)
        if length is None:
            raise DigestError(f"unsupported digest algorithm: {algorithm!r}")
        if len(hexpart) != length or not _HEX_RE.fullmatch(hexpart):
            raise DigestError(f"invalid {algorithm} digest: {value!r}")
        return cls(algorithm, hexpart)

    @classmethod
    def is_valid(cls, value: str) -> bool:
        try:
            cls.parse(value)
        except DigestError:
            return False
        return True

    def hasher(self) -> Any:
        return hashlib.new(self.algorithm)

    @property
    def short(self) -> str:
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def digest_bytes(data: bytes, algorithm: str = "sha256") -> Digest:
    if algorithm not in ALGORITHMS:
        raise DigestError(f"unsupported digest algorithm: {algorithm!r}")
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())


class Verifier:
    """Hash content as it streams past; `verify()` at the end checks digest and size.

    Use `expected=None` to only compute (`digest` after the stream ends).
    """

    __slots__ = ("_hash", "algorithm", "expected", "expected_size", "size")

    def __init__(
        self,
        expected: Digest | None = None,
        expected_size: int | None = None,
        algorithm: str = "sha256",
    ) -> None:
        self.expected = expected
        self.expected_size = expected_size
        self.algorithm = expected.algorithm if expected else algorithm
        self._hash = hashlib.new(self.algorithm)
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)
        if self.expected_size is not None and self.size > self.expected_size:
            raise DigestMismatch(
                self.expected or self.digest,
                self.digest,
                f"content longer than the announced {self.expected_size} bytes",
            )

    @property
    def digest(self) -> Digest:
        return Digest(self.algorithm, self._hash.hexdigest())

    def verify(self) -> Digest:
        actual = self.digest
        if self.expected_size is not None and self.size != self.expected_size:
            raise DigestMismatch(
                self.expected or actual,
                actual,
                f"size mismatch: expected {self.expected_size} bytes, got {self.size}",
            )
        if self.expected is not None and actual != self.expected:
            raise DigestMismatch(self.expected, actual)
        return actual
