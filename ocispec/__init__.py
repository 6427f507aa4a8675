"""OCI primitives shared by the registry and the client: digests, references, media types, models.

This package imports neither `registry` nor `puller`; both import it.
"""

from ocispec.digest import (
    ALGORITHMS,
    Digest,
    DigestError,
    DigestMismatch,
    Verifier,
    digest_bytes,
)
from ocispec.reference import REPOSITORY_NAME_RE, Reference, ReferenceError, valid_repository_name

__all__ = [
    "ALGORITHMS",
    "Digest",
    "DigestError",
    "DigestMismatch",
    "REPOSITORY_NAME_RE",
    "Reference",
    "ReferenceError",
    "Verifier",
    "digest_bytes",
    "valid_repository_name",
]
