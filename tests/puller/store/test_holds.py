"""Holds: content a container (or build) still uses survives `prune`, and `rmi` refuses
to drop the last name of a held image."""

from __future__ import annotations

from argparse import Namespace

import pytest

from puller.cli import cmd_rmi
from puller.store import GraphStore, prune
from tests.puller.conftest import put_image
from tests.support.images import register_image, sample_image


def test_prune_keeps_held_images_and_forgets_released_ones(store: GraphStore) -> None:
    image = sample_image()
    register_image(store, image, "localhost/a:v1")
    store.holds.add("container-1", image.digest)
    store.images.remove("localhost/a:v1")
    report = prune(store)
    assert report.blobs == [] and report.layers == []
    assert store.holds.held() == {image.digest: ["container-1"]}
    store.holds.release("container-1")
    report = prune(store)
    assert image.digest in report.blobs and len(report.layers) == len(image.layers)


def test_holder_names_are_plain_file_names(store: GraphStore) -> None:
    for bad in ("", "../x", ".hidden", "a/b"):
        with pytest.raises(ValueError):
            store.holds.add(bad, sample_image().digest)


def test_rmi_refuses_the_last_name_of_a_held_image(
    store: GraphStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PYREG_HOME", str(store.root))
    image = sample_image()
    put_image(store, "localhost/a:v1", image)
    put_image(store, "localhost/b:v1", image)
    store.holds.add("container-abc", image.digest)

    assert cmd_rmi(Namespace(images=["localhost/a:v1"])) == 0  # b:v1 still names it
    assert cmd_rmi(Namespace(images=["localhost/b:v1"])) == 1
    assert "in use by container-abc" in capsys.readouterr().err
    assert store.images.get("localhost/b:v1") == image.digest
    store.holds.release("container-abc")
    assert cmd_rmi(Namespace(images=["localhost/b:v1"])) == 0
    assert store.images.list() == {}
