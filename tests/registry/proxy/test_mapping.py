"""Which upstream a client's name mirrors: explicit names, `?ns=`, and the default upstream."""

from __future__ import annotations

from registry.proxy import mapping
from registry.proxy.config import parse_proxy_config

CONFIG = parse_proxy_config(
    {
        "upstreams": [
            {"url": "https://registry-1.docker.io", "namespace": "docker.io", "default": True},
            {"url": "http://127.0.0.1:5001", "namespace": "lab", "name": "lab"},
        ]
    }
)
NO_DEFAULT = parse_proxy_config(
    {"upstreams": [{"url": "http://127.0.0.1:5001", "namespace": "lab"}]}
)


def test_explicit_names() -> None:
    target = mapping.by_local_name(CONFIG, "lab/team/app")
    assert target is not None and (target.local, target.remote) == ("lab/team/app", "team/app")
    assert target.upstream.name == "lab"
    hub = mapping.by_local_name(CONFIG, "docker.io/busybox")
    assert hub is not None and hub.remote == "library/busybox"  # Docker Hub's official images
    assert mapping.by_local_name(CONFIG, "lab") is None
    assert mapping.by_local_name(CONFIG, "laboratory/x") is None


def test_ns_parameter_chooses_by_namespace_or_host() -> None:
    by_ns = mapping.for_read(CONFIG, "library/busybox", "docker.io", local_exists=True)
    assert by_ns is not None and by_ns.local == "docker.io/library/busybox"
    by_host = mapping.for_read(CONFIG, "team/app", "127.0.0.1:5001", local_exists=False)
    assert by_host is not None and (by_host.local, by_host.remote) == ("lab/team/app", "team/app")
    assert mapping.for_read(NO_DEFAULT, "team/app", "quay.io", local_exists=False) is None


def test_default_upstream_for_unprefixed_names_unless_local() -> None:
    target = mapping.for_read(CONFIG, "library/busybox", None, local_exists=False)
    assert target is not None and target.local == "docker.io/library/busybox"
    assert mapping.for_read(CONFIG, "library/busybox", None, local_exists=True) is None
    assert mapping.for_read(NO_DEFAULT, "library/busybox", None, local_exists=False) is None


def test_path_pattern_takes_the_name_as_the_route_table_does() -> None:
    match = mapping.PATH_RE.match("/v2/docker.io/library/busybox/manifests/latest")
    assert match is not None and (match["name"], match["kind"]) == (
        "docker.io/library/busybox",
        "manifests",
    )
    assert mapping.PATH_RE.match("/v2/_catalog") is None
