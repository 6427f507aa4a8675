"""One real `pyreg serve` process per storage setup for the whole conformance package, and an
httpx client on it. Every check runs against filesystem storage, S3 storage (moto in server
mode on 127.0.0.1) and filesystem storage with access control on (token auth, the client
logging in as the suite does with OCI_USERNAME/OCI_PASSWORD).

Each module is one ordered workflow, as in the Go suite, and works in repositories of its
own, so tag counts and referrer lists mean what the suite expects.

With `OCI_ROOT_URL` set (the suite's own variable, e.g. `http://127.0.0.1:5000`), the checks
run once against that registry instead, with `OCI_USERNAME`/`OCI_PASSWORD` if given: a way
to compare pyreg with another registry on the very same checks."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.registry.conformance.suite_auth import SuiteAuth
from tests.registry.conformance.targets import External, Target
from tests.support.auth import auth_section
from tests.support.moto_server import create_bucket, s3_storage_url, start_moto
from tests.support.rgw import RgwUnavailable, start_rgw
from tests.support.server import RegistryServer

USER, PASSWORD = "conformance", "conformance-secret"
EXTERNAL = os.environ.get("OCI_ROOT_URL", "").rstrip("/")
SETUPS = ["external"] if EXTERNAL else ["filesystem", "s3", "rgw", "filesystem+auth"]


@pytest.fixture(scope="package", params=SETUPS)
def setup(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="package")
def registry(setup: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    if setup == "external":
        yield External(EXTERNAL)
        return
    root = tmp_path_factory.mktemp("conformance")
    config = None
    if setup == "s3":
        endpoint = start_moto()
        storage = s3_storage_url(endpoint, create_bucket(endpoint), "conformance")
    elif setup == "rgw":
        try:
            cluster = start_rgw()
        except RgwUnavailable as e:
            pytest.skip(f"Ceph RGW cannot run here: {e}")
        storage = cluster.storage_url(cluster.create_bucket(), "conformance")
    else:
        storage = f"file://{root / 'storage'}"
    if setup.endswith("+auth"):
        rights = {"pull": [USER], "push": [USER], "delete": [USER]}
        rules = [{"repository": p, **rights} for p in ("conformance/**", "robust/**")]
        config = {"auth": auth_section(root, {USER: PASSWORD}, rules)}
    with RegistryServer(storage, config) as server:
        yield server


@pytest.fixture(scope="module")
def client(setup: str, registry: Target) -> Iterator[httpx.Client]:
    auth = SuiteAuth(USER, PASSWORD) if setup.endswith("+auth") else None
    if setup == "external" and os.environ.get("OCI_USERNAME"):
        auth = SuiteAuth(os.environ["OCI_USERNAME"], os.environ.get("OCI_PASSWORD", ""))
    with httpx.Client(base_url=registry.url, timeout=30.0, auth=auth) as c:
        yield c
