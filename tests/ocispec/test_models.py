import json

import pytest

from ocispec import mediatypes as mt
from ocispec.digest import Digest
from ocispec.models import (
    ImageConfig,
    Index,
    Manifest,
    ManifestError,
    chain_ids,
    parse_manifest,
)

D = "sha256:" + "a" * 64


def test_parse_oci_manifest_with_subject_and_artifact_type() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/x-test",
        "config": {"mediaType": mt.OCI_EMPTY, "digest": D, "size": 2},
        "layers": [],
        "subject": {"mediaType": mt.OCI_MANIFEST, "digest": D, "size": 10},
    }
    m = parse_manifest(json.dumps(doc).encode())
    assert isinstance(m, Manifest)
    assert m.subject is not None and m.artifact_type == "application/x-test"


def test_parse_index() -> None:
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    assert isinstance(parse_manifest(json.dumps(doc).encode()), Index)


@pytest.mark.parametrize(
    "doc",
    [
        b"not json",
        b"[]",
        json.dumps({"schemaVersion": 1, "config": {}}).encode(),
        json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST}).encode(),
        json.dumps(
            {"schemaVersion": 2, "config": {"mediaType": "x", "digest": "bad", "size": 1}}
        ).encode(),
    ],
)
def test_invalid(doc: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(doc)


def test_chain_ids() -> None:
    a, b = Digest.parse("sha256:" + "1" * 64), Digest.parse("sha256:" + "2" * 64)
    ids = chain_ids([a, b])
    assert ids[0] == a
    import hashlib

    assert ids[1].hex == hashlib.sha256(f"{a} {b}".encode()).hexdigest()


def test_absurdly_nested_json_is_a_manifest_error() -> None:
    depth = 100_000
    # json.loads raises RecursionError here: from a malicious registry (manifest, config) it
    # must be a typed error, not a traceback in `pyreg pull`.
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    with pytest.raises(ManifestError):
        parse_manifest(nested, mt.OCI_MANIFEST)
    with pytest.raises(ManifestError):
        ImageConfig.parse(nested)
