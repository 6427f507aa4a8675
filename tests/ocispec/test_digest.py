import hashlib

import pytest

from ocispec.digest import Digest, DigestError, DigestMismatch, Verifier, digest_bytes


def test_parse_sha256_and_sha512() -> None:
    d = Digest.parse("sha256:" + "a" * 64)
    assert (d.algorithm, d.hex) == ("sha256", "a" * 64)
    assert str(Digest.parse("sha512:" + "b" * 128)) == "sha512:" + "b" * 128


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256",
        "sha256:",
        "sha256:" + "a" * 63,
        "sha256:" + "A" * 64,
        "sha512:" + "a" * 64,
        "md5:" + "a" * 32,
        "sha256:" + "g" * 64,
        "sha256:../" + "a" * 61,
        "sha256:" + "a" * 64 + "\n",  # Python's `$` matches before a final newline
    ],
)
def test_parse_rejects(value: str) -> None:
    with pytest.raises(DigestError):
        Digest.parse(value)


def test_verifier_checks_digest_and_size() -> None:
    data = b"hello world"
    expected = Digest("sha256", hashlib.sha256(data).hexdigest())
    v = Verifier(expected, len(data))
    v.update(data[:5])
    v.update(data[5:])
    assert v.verify() == expected
    bad = Verifier(expected, len(data))
    bad.update(b"hello there")
    with pytest.raises(DigestMismatch):
        bad.verify()
    long = Verifier(expected, 3)
    with pytest.raises(DigestMismatch):
        long.update(data)


def test_digest_bytes_sha512() -> None:
    assert digest_bytes(b"x", "sha512").hex == hashlib.sha512(b"x").hexdigest()
