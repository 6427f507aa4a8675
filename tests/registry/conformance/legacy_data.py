"""The test content of the OCI conformance suite's ginkgo workflows (conformance/setup.go,
v1.1): one config and one image manifest per workflow (pull, push, discovery, management),
a gzip layer, two small blobs (one pushed in two chunks), and the referrers set: four
artifact manifests and an artifact index whose subject is `manifests[4]`, plus one artifact
whose subject (`manifests[3]`) is never pushed.

Content is built the way the Go suite builds it (structs marshalled with tab indentation,
`[]byte` fields as base64), so digests and sizes behave alike.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
from dataclasses import dataclass, field
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

# A tarball of one text file, gzip-compressed (the suite's layerBase64String).
LAYER_B64 = (
    "H4sIAAAAAAAAA+3OQQrCMBCF4a49xXgBSUnaHMCTRBptQRNpp6i3t0UEV7oqIv7fYgbmzeJpHHSjVy0"
    "WZCa1c/MufWVe94N3RWlrZ72x3k/30nhbFWKWLPU0Dhp6keJ8im//PuU/6pZH2WVtYx8b0Sz7LjWSR5VLG6YRBumSzOlGtjkd+qD"
    "jMWiX07Befbs7AAAAAAAAAAAAAAAAAPyzO34MnqoAKAAA"
)
NUM_WORKFLOWS = 5  # pull, push, discovery, management, and the referrers subject
TEST_TAG = "tagtest0"
EMPTY_LAYER_TAG = "emptylayer"
NONEXISTENT_MANIFEST = ".INVALID_MANIFEST_NAME"
ANNOTATION_KEY = "org.opencontainers.conformance.test"
ARTIFACT_TYPE_A = "application/vnd.nhl.peanut.butter.bagel"
ARTIFACT_TYPE_B = "application/vnd.nba.strawberry.jam.croissant"
ARTIFACT_TYPE_INDEX = "application/vnd.food.stand"
ERROR_CODES = {
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def marshal(obj: Any) -> bytes:
    """Go's json.MarshalIndent(v, "", "\\t")."""
    return json.dumps(obj, indent="\t").encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def descriptor(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(content), "size": len(content), **extra}


@dataclass
class Blob:
    content: bytes

    @property
    def digest(self) -> str:
        return sha256(self.content)

    @property
    def length(self) -> str:
        return str(len(self.content))


@dataclass
class LegacyData:
    seed: int
    configs: list[Blob] = field(default_factory=list)
    manifests: list[Blob] = field(default_factory=list)
    refs: dict[str, Blob] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.layer = Blob(base64.b64decode(LAYER_B64))
        layer_desc = descriptor(LAYER_GZIP, self.layer.content)
        letters = string.digits + string.ascii_letters + "-"
        for _ in range(NUM_WORKFLOWS):
            author = "".join(rng.choice(letters) for _ in range(16))
            config = {
                "author": author,
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []},
            }
            self.configs.append(Blob(marshal(config)))
        for i in range(NUM_WORKFLOWS):
            self.manifests.append(Blob(marshal(self._image_manifest(i, [layer_desc], True))))
        self.empty_layer_manifest = Blob(marshal(self._image_manifest(1, [], False)))
        self.blob_a = Blob(rng.randbytes(42))
        self.blob_b = Blob(rng.randbytes(42))
        half = 42 // 2 + 1
        self.chunk1, self.chunk2 = self.blob_b.content[:half], self.blob_b.content[half:]
        self.chunk1_range = f"0-{len(self.chunk1) - 1}"
        self.chunk2_range = f"{len(self.chunk1)}-{len(self.blob_b.content) - 1}"
        self.dummy_digest = sha256(b"hello world")
        self._referrers()

    def _image_manifest(
        self, i: int, layers: list[dict[str, Any]], with_media_type: bool
    ) -> dict[str, Any]:
        config = self.configs[i].content
        manifest: dict[str, Any] = {"schemaVersion": 2}
        if with_media_type:
            manifest["mediaType"] = OCI_MANIFEST
        # `data` must be the config's content; `newUnspecifiedField` is a field the spec does
        # not know, which a registry must keep (the suite's check on custom fields).
        manifest["config"] = descriptor(
            OCI_CONFIG, config, data=b64(config), newUnspecifiedField=b64(b"hello world")
        )
        manifest["layers"] = layers
        return manifest

    def _referrers(self) -> None:
        self.empty_json = Blob(b"{}")
        self.ref_blob_a = Blob(b"NHL Peanut Butter on my NHL bagel")
        self.ref_blob_b = Blob(b"NBA Strawberry Jam on my NBA croissant")
        empty_desc = descriptor(OCI_EMPTY, self.empty_json.content)
        subject = descriptor(OCI_MANIFEST, self.manifests[4].content)
        missing_subject = descriptor(OCI_MANIFEST, self.manifests[3].content)

        def artifact(
            config: dict[str, Any],
            layers: list[dict[str, Any]],
            subj: dict[str, Any],
            note: str | None,
            artifact_type: str | None = None,
        ) -> Blob:
            manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
            if artifact_type:
                manifest["artifactType"] = artifact_type
            manifest["config"] = config
            manifest["layers"] = layers
            manifest["subject"] = subj
            if note:
                manifest["annotations"] = {ANNOTATION_KEY: note}
            blob = Blob(marshal(manifest))
            if note:
                self.annotations[blob.digest] = note
            return blob

        a, b = self.ref_blob_a.content, self.ref_blob_b.content
        self.refs["a_config"] = artifact(
            descriptor(ARTIFACT_TYPE_A, a), [empty_desc], subject, "test config a"
        )
        self.refs["b_config"] = artifact(
            descriptor(ARTIFACT_TYPE_B, b), [empty_desc], subject, "test config b"
        )
        self.refs["a_layer"] = artifact(
            empty_desc, [descriptor(ARTIFACT_TYPE_A, a)], subject, "test layer a", ARTIFACT_TYPE_A
        )
        self.refs["b_layer"] = artifact(
            empty_desc, [descriptor(ARTIFACT_TYPE_B, b)], subject, "test layer b", ARTIFACT_TYPE_B
        )
        self.refs["c_layer"] = artifact(
            empty_desc, [descriptor(ARTIFACT_TYPE_B, b)], missing_subject, None, ARTIFACT_TYPE_B
        )
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": ARTIFACT_TYPE_INDEX,
            "manifests": [
                descriptor(OCI_MANIFEST, self.refs["a_config"].content),
                descriptor(OCI_MANIFEST, self.refs["a_layer"].content),
            ],
            "subject": subject,
            "annotations": {ANNOTATION_KEY: "test index"},
        }
        self.refs["index"] = Blob(marshal(index))
        self.annotations[self.refs["index"].digest] = "test index"
