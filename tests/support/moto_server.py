"""S3 for tests: moto in server mode, over real HTTP on 127.0.0.1 (never a real AWS endpoint).

Use it from any test package by importing the fixtures into a conftest.py:

    from tests.support.moto_server import moto_endpoint, s3_bucket  # noqa: F401

- `moto_endpoint` (session scope): the URL of the one moto server of this test process, e.g.
  ``http://127.0.0.1:41234`` (`moto.server.ThreadedMotoServer` on 127.0.0.1, an ephemeral
  port). The server starts on first use (`start_moto()`) and lives until the process exits, so
  every conftest or module importing the fixture shares it. From then on the process
  environment carries dummy credentials (`AWS_ACCESS_KEY_ID=testing`, ...), region
  `us-east-1`, `AWS_ENDPOINT_URL` pointing at moto, and no AWS config or credentials files, so
  any client created without an explicit endpoint (including registry subprocesses, which
  inherit the environment) talks to moto and nothing else.
- `s3_bucket` (function scope): the name of a fresh, empty bucket on that server.
- `create_bucket(endpoint)`: make a fresh bucket yourself (e.g. one per replica test).
- `s3_client(endpoint)`: a cached synchronous botocore client, to inspect the bucket directly.
- `s3_storage_url(endpoint, bucket, prefix)`: the `s3://` URL for `open_backend` /
  `pyreg serve --storage`, with the endpoint and region in its query string.

moto keeps all state in the one server process for the whole session: use a new bucket per
test instead of resetting it.

Where moto departs from S3 in a way that would hide bugs, the fixture corrects it:
UploadPart, UploadPartCopy and CompleteMultipartUpload with an unknown (aborted, completed)
upload id answer `NoSuchUpload` (404) as S3 does, instead of moto's 500 `KeyError` (which
botocore retries for ~25 s). moto does not tie an upload id to its key, so "right id, wrong key"
is not detectable on it.
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
import uuid
from typing import Any
from urllib.parse import urlencode

import botocore.session
import pytest
from moto.s3.exceptions import NoSuchUpload
from moto.s3.models import S3Backend as MotoS3Backend
from moto.server import ThreadedMotoServer

REGION = "us-east-1"

_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    # No instance-metadata lookups (they would go to 169.254.169.254).
    "AWS_EC2_METADATA_DISABLED": "true",
}
_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_ROLE_ARN")


def _known_upload(method: Any) -> Any:
    """Wrap a moto backend method taking (bucket_name, multipart_id, ...) to raise NoSuchUpload."""

    @functools.wraps(method)
    def wrapper(
        self: MotoS3Backend, bucket_name: str, multipart_id: str, *a: Any, **kw: Any
    ) -> Any:
        if multipart_id not in self.get_bucket(bucket_name).multiparts:
            raise NoSuchUpload(upload_id=multipart_id)
        return method(self, bucket_name, multipart_id, *a, **kw)

    return wrapper


_lock = threading.Lock()
_endpoint: str | None = None


def start_moto() -> str:
    """Start this process's moto server (once) and point the AWS environment at it."""
    global _endpoint
    with _lock:
        if _endpoint is not None:
            return _endpoint
        for method in ("upload_part", "upload_part_copy", "complete_multipart_upload"):
            setattr(MotoS3Backend, method, _known_upload(getattr(MotoS3Backend, method)))
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        atexit.register(server.stop)
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        os.environ.update(_ENV)
        for name in _UNSET:
            os.environ.pop(name, None)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        _endpoint = endpoint
        return endpoint


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    return start_moto()


def create_bucket(endpoint: str, name: str | None = None) -> str:
    """Create a bucket on the moto server at `endpoint`; returns its name."""
    if not endpoint.startswith(("http://127.0.0.1:", "http://[::1]:", "http://localhost:")):
        raise ValueError(f"refusing a non-loopback S3 endpoint in tests: {endpoint}")
    bucket = name or f"test-{uuid.uuid4().hex[:20]}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    return bucket


@functools.cache
def s3_client(endpoint: str) -> Any:
    """A plain (synchronous) botocore S3 client on `endpoint`, for looking behind a backend.

    Building one takes about a second, so there is one per endpoint for the session."""
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    return create_bucket(moto_endpoint)


def s3_storage_url(endpoint: str, bucket: str, prefix: str = "", **options: str) -> str:
    """`s3://bucket/prefix?endpoint_url=...&region=...` plus any extra backend options."""
    query = urlencode({"endpoint_url": endpoint, "region": REGION, **options})
    return f"s3://{bucket}/{prefix.strip('/')}?{query}"
