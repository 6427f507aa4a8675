"""Layer unpacking details: compression detection."""

from __future__ import annotations

import gzip

from ocispec import mediatypes as mt
from puller.store.unpack import compression_of, sniff_media_type
from tests.support.images import file, make_layer, make_tar


def test_sniff_media_type() -> None:
    assert sniff_media_type(gzip.compress(b"x")[:4]) == mt.OCI_LAYER_GZIP
    assert sniff_media_type(make_layer([], "zstd").blob[:4]) == mt.OCI_LAYER_ZSTD
    assert sniff_media_type(make_tar([file("a")])[:4]) == mt.OCI_LAYER


def test_compression_of() -> None:
    assert compression_of(mt.DOCKER_LAYER) == "gzip"
    assert compression_of(mt.OCI_LAYER_ZSTD) == "zstd"
    assert compression_of(mt.OCI_LAYER) == ""
    assert compression_of("application/vnd.docker.image.rootfs.diff.tar") == "sniff"
    assert compression_of("application/json") is None
