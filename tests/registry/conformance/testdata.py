"""Test data of the OCI conformance suite's current runner (conformance/testdata.go and
`GenerateData` in run.go): random blobs, gzip or plain tar layers, image configs, image
manifests, indexes, artifacts, referrers, in sha256 or sha512.

A `TestData` set records what to push (blobs, manifests in push order, tags) and what the
registry must then answer (descriptors, referrers per subject), as the Go `testData` does.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import secrets
import tarfile
from dataclasses import dataclass, field
from typing import Any

MT_EXAMPLE_1 = "application/vnd.example.oci.conformance.v1"
MT_EXAMPLE_2 = "application/vnd.example.oci.conformance.v2"
MT_OCTET = "application/octet-stream"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_IMAGE = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_PREFIX = "application/vnd.oci.image.layer.v1."
MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MT_LAYER_ND_GZ = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MT_EMPTY = "application/vnd.oci.empty.v1+json"

Platform = dict[str, str]
AMD64: Platform = {"architecture": "amd64", "os": "linux"}
ARM64: Platform = {"architecture": "arm64", "os": "linux"}


def digest_of(data: bytes, algo: str = "sha256") -> str:
    return f"{algo}:{hashlib.new(algo, data).hexdigest()}"


def _json(obj: Any) -> bytes:
    # Go's json.Marshal: compact, no spaces
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class Gen:
    """The generator options (genOptS); fields left at None take each function's default."""

    algo: str = "sha256"
    annotations: dict[str, str] | None = None
    annotation_uniq: bool = False
    artifact_type: str = ""
    compress: bool = True
    config_bytes: bytes | None = None
    config_media_type: str = ""
    extra_field: bool = False
    layer_bytes: bytes | None = None
    layer_count: int = 2
    layer_media_type: str = ""
    platform: Platform | None = None
    platforms: list[Platform] | None = None
    set_data: bool = False
    subject: dict[str, Any] | None = None
    tag: str = ""


@dataclass
class TestData:
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    desc: dict[str, dict[str, Any]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    man_order: list[str] = field(default_factory=list)
    referrers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # digests whose push must fail with a bad digest, and which are then not pulled
    bad_digest: set[str] = field(default_factory=set)
    # digests pushed by digest with `?tag=` parameters (tag-param data sets)
    tag_param: set[str] = field(default_factory=set)

    __test__ = False  # not a pytest class

    def _descriptor(self, media_type: str, data: bytes, dig: str, g: Gen) -> dict[str, Any]:
        desc: dict[str, Any] = {"mediaType": media_type, "digest": dig, "size": len(data)}
        if g.set_data:
            desc["data"] = base64.b64encode(data).decode()
        return desc

    def add_blob(self, data: bytes, g: Gen, media_type: str = MT_OCTET) -> str:
        dig = digest_of(data, g.algo)
        self.blobs[dig] = data
        self.desc[dig] = self._descriptor(media_type, data, dig, g)
        return dig

    def gen_blob(self, g: Gen, size: int = 2048, media_type: str = MT_OCTET) -> str:
        return self.add_blob(os.urandom(size), g, media_type)

    def gen_layer(self, file_num: int, g: Gen) -> tuple[str, str]:
        """A one-file tar layer; returns (compressed digest, uncompressed digest)."""
        content = (
            f"Conformance test file contents for file number {file_num}.\n"
            f"Todays lucky number is {secrets.randbelow(2**63)}\n"
        ).encode()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"./conformance-{file_num}.txt")
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
        plain = buf.getvalue()
        body, media_type = (
            (gzip.compress(plain, mtime=0), MT_LAYER_GZ)
            if g.compress
            else (
                plain,
                MT_LAYER,
            )
        )
        dig = digest_of(body, g.algo)
        self.blobs[dig] = body
        self.desc[dig] = self._descriptor(media_type, body, dig, g)
        return dig, digest_of(plain, g.algo)

    def gen_config(self, platform: Platform, diff_ids: list[str], g: Gen) -> str:
        config: dict[str, Any] = {
            "author": "OCI Conformance Test",
            **platform,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        if g.extra_field:
            config = _add_fields(config)
        body = _json(config)
        dig = digest_of(body, g.algo)
        self.blobs[dig] = body
        self.desc[dig] = self._descriptor(g.config_media_type or MT_CONFIG, body, dig, g)
        return dig

    def gen_manifest(
        self, config: dict[str, Any], layers: list[dict[str, Any]], g: Gen
    ) -> tuple[str, bytes]:
        manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_IMAGE}
        if g.artifact_type:
            manifest["artifactType"] = g.artifact_type
        manifest["config"] = config
        manifest["layers"] = layers
        if g.subject:
            manifest["subject"] = g.subject
        annotations = _annotations(g)
        if annotations:
            manifest["annotations"] = annotations
        if g.extra_field:
            manifest = _add_fields(manifest)
        body = _json(manifest)
        dig = self._add_manifest(body, MT_IMAGE, g)
        self._add_referrer(
            g, MT_IMAGE, g.artifact_type or config["mediaType"], dig, body, annotations
        )
        return dig, body

    def gen_manifest_full(self, g: Gen) -> str:
        platform = g.platform or AMD64
        compressed: list[str] = []
        uncompressed: list[str] = []
        for n in range(g.layer_count):
            if not g.layer_media_type or g.layer_media_type.startswith(MT_LAYER_PREFIX):
                c, u = self.gen_layer(n, g)
            elif g.layer_bytes is not None:
                c = u = self.add_blob(g.layer_bytes, g, g.layer_media_type)
            else:
                c = u = self.gen_blob(g, media_type=g.layer_media_type)
            compressed.append(c)
            uncompressed.append(u)
        if not g.config_media_type or g.config_media_type == MT_CONFIG:
            config = self.gen_config(platform, uncompressed, g)
        else:
            config = self.add_blob(g.config_bytes or b"", g, g.config_media_type)
        layers = [self.desc[d] for d in compressed]
        return self.gen_manifest(self.desc[config], layers, g)[0]

    def gen_index(self, platforms: list[Platform | None], children: list[str], g: Gen) -> str:
        index: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_INDEX}
        if g.artifact_type:
            index["artifactType"] = g.artifact_type
        entries = []
        for platform, child in zip(platforms, children, strict=True):
            entry = dict(self.desc[child])
            if platform is not None:
                entry["platform"] = platform
            entries.append(entry)
        index["manifests"] = entries
        if g.subject:
            index["subject"] = g.subject
        annotations = _annotations(g)
        if annotations:
            index["annotations"] = annotations
        if g.extra_field:
            index = _add_fields(index)
        body = _json(index)
        dig = self._add_manifest(body, MT_INDEX, g)
        self._add_referrer(g, MT_INDEX, g.artifact_type, dig, body, annotations)
        return dig

    def gen_index_full(self, g: Gen) -> str:
        platforms = g.platforms if g.platforms is not None else [AMD64, ARM64]
        children = [self.gen_manifest_full(_with(g, platform=p)) for p in platforms]
        return self.gen_index(list(platforms), children, g)

    def _add_manifest(self, body: bytes, media_type: str, g: Gen) -> str:
        dig = digest_of(body, g.algo)
        self.manifests[dig] = body
        self.man_order.append(dig)
        self.desc[dig] = self._descriptor(media_type, body, dig, g)
        if g.tag:
            self.tags[g.tag] = dig
        return dig

    def _add_referrer(
        self,
        g: Gen,
        media_type: str,
        artifact_type: str,
        dig: str,
        body: bytes,
        annotations: dict[str, str] | None,
    ) -> None:
        if g.subject:
            entry: dict[str, Any] = {
                "mediaType": media_type,
                "artifactType": artifact_type,
                "digest": dig,
                "size": len(body),
                "annotations": annotations or {},
            }
            self.referrers.setdefault(g.subject["digest"], []).append(entry)


def _with(g: Gen, **changes: Any) -> Gen:
    return Gen(**{**g.__dict__, **changes})


def _annotations(g: Gen) -> dict[str, str] | None:
    if not g.annotation_uniq:
        return g.annotations
    return {**(g.annotations or {}), f"org.example.{secrets.token_hex(8)}": secrets.token_hex(8)}


def _add_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """genAddJSONFields: fields no spec defines, which a registry must store untouched."""
    return {**obj, "customField": secrets.token_hex(8), "customObject": {"a": [1, 2, 3]}}


def generate() -> dict[str, TestData]:
    """Every data set of `GenerateData` with the v1.1 defaults plus every data option on
    (Sparse stays off, as in the suite's defaults), and the 1.1+dev tag-parameter sets."""
    sets: dict[str, TestData] = {}

    def new(name: str) -> TestData:
        sets[name] = TestData(name)
        return sets[name]

    new("image").gen_manifest_full(Gen(tag="image"))
    new("image-uncompressed").gen_manifest_full(Gen(tag="image-uncompressed", compress=False))
    large = {f"large-annotation-{i}": "A" * 10000 for i in range(390)}
    new("large-manifest").gen_manifest_full(Gen(tag="large-manifest", annotations=large))
    new("index").gen_index_full(Gen(tag="index"))
    nested = new("nested-index")
    children = [nested.gen_index_full(Gen()), nested.gen_index_full(Gen())]
    nested.gen_index([None, None], children, Gen(tag="index-of-index"))
    new("empty-index").gen_index_full(Gen(tag="index", platforms=[]))
    artifact = Gen(
        artifact_type=MT_EXAMPLE_1,
        config_media_type=MT_EMPTY,
        config_bytes=b"{}",
        layer_count=1,
        layer_media_type=MT_EXAMPLE_1,
    )
    new("artifact").gen_manifest_full(_with(artifact, tag="artifact"))
    new("artifact-index").gen_index_full(_with(artifact, tag="artifact-index"))
    new("artifact-without-layers").gen_manifest_full(
        _with(artifact, tag="artifact-without-layers", layer_bytes=b"{}", layer_media_type=MT_EMPTY)
    )
    subj = new("artifacts-with-subject")
    subject = subj.desc[subj.gen_manifest_full(Gen(tag="image"))]
    subj.gen_manifest_full(Gen(subject=subject))
    note = {"org.opencontainers.conformance": "hello conformance test"}
    referrer = _with(artifact, annotations=note, annotation_uniq=True, subject=subject)
    subj.gen_manifest_full(_with(referrer, tag="tagged-artifact1"))
    subj.gen_manifest_full(
        _with(
            referrer,
            tag="tagged-artifact2",
            artifact_type=MT_EXAMPLE_2,
            layer_media_type=MT_OCTET,
        )
    )
    index_subj = new("index-with-subject")
    subject = index_subj.desc[index_subj.gen_index_full(Gen(tag="index"))]
    index_subj.gen_index_full(_with(referrer, subject=subject, tag="tagged-artifact"))
    missing = {"mediaType": MT_IMAGE, "size": 123, "digest": digest_of(b"missing content")}
    new("missing-subject").gen_manifest_full(
        _with(referrer, subject=missing, tag="tagged-artifact")
    )
    new("data-field").gen_manifest_full(Gen(tag="data-field", set_data=True))
    _non_distributable(new("non-distributable-layers"))
    new("custom-fields").gen_index_full(Gen(tag="custom-fields", extra_field=True))
    new("no-layers").gen_manifest_full(Gen(tag="no-layers", layer_count=0))
    # non-canonical digests need tag parameters to be tagged, so sha512 is pushed by digest
    new("sha512").gen_index_full(Gen(algo="sha512"))
    for algo in ("sha256", "sha512"):
        name = f"tag-param-{algo}"
        data = new(name)
        data.gen_index_full(Gen(tag=name, algo=algo))
        for i, dig in enumerate(data.man_order):
            data.tags[f"{name}-{i}"] = dig
            data.tag_param.add(dig)
    bad = new("bad-digest-image")
    dig = bad.gen_manifest_full(Gen())
    bad.manifests[dig] += b"  "  # whitespace: the content no longer matches its digest
    bad.bad_digest.add(dig)
    return sets


def _non_distributable(data: TestData) -> None:
    def foreign(media_type: str, size: int) -> dict[str, Any]:
        dig = digest_of(os.urandom(256))
        url = "https://store.example.com/blobs/sha256/" + dig.split(":", 1)[1]
        return {"mediaType": media_type, "digest": dig, "size": size, "urls": [url]}

    g = Gen()
    first, second = foreign(MT_LAYER_ND_GZ, 123456), foreign(MT_LAYER_ND, 12345)
    compressed, uncompressed = data.gen_layer(1, g)
    diff_ids = [digest_of(os.urandom(256)), second["digest"], uncompressed]
    config = data.gen_config(AMD64, diff_ids, g)
    layers = [first, second, data.desc[compressed]]
    data.gen_manifest(data.desc[config], layers, Gen(tag="non-distributable-image"))
