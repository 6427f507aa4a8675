"""A backend on an S3 bucket (AWS or any S3-compatible store), through aiobotocore.

Keys map to `<prefix>/<path>` in the bucket. One client is created in `open()` and shared by
every request until `close()`. Missing objects (NoSuchKey, 404) and unknown multipart uploads
(NoSuchUpload) raise `NotFound`; connection failures, timeouts and S3 5xx raise
`StorageUnavailable` (quota/storage full: `StorageFull`); other S3 refusals `StorageError`.

Memory: nothing is buffered beyond one part. `put_stream` of unknown length fills one part
buffer (`part_size`, 8 MiB by default, doubling every 1000 parts to stay under S3's 10000) and
switches to a multipart upload once the stream outgrows it. `multipart_upload_part` holds the
one part it sends: SigV4 over plain HTTP (and S3's checksums) need the payload's hash before
the body is sent, so callers keep parts modest (the registry coalesces to a few MiB).

Multipart state lives in S3 itself (ListParts), so another process or replica continues an
upload from the upload id alone.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from storage_backends.base import (
    CHUNK_SIZE,
    Keep,
    NotFound,
    Op,
    Part,
    Plan,
    Result,
    Stat,
    StorageError,
    StorageFull,
    StorageUnavailable,
    check_path,
    check_prefix,
    run_each,
    run_rounds,
)

MiB = 1024 * 1024
GiB = 1024 * MiB
_MISSING = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchUpload"})
# "No room" as S3-compatible stores say it (Ceph RGW quotas, MinIO's full disks).
_FULL = frozenset({"QuotaExceeded", "XMinioStorageFull", "InsufficientStorage"})
_STREAM_RESUMES = 3  # consecutive broken reads a stream survives
_T = TypeVar("_T")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _as_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ValueError(f"s3 option {name}: expected a boolean, got {value!r}")


def _as_int(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"s3 option {name}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValueError(f"s3 option {name}: expected an integer, got {value!r}")


def _as_str(name: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    raise ValueError(f"s3 option {name}: expected a string, got {value!r}")


@functools.cache
def _session() -> AioSession:
    # One botocore session per process: it caches the loaded service models, so opening a
    # second backend (tests, several buckets) takes milliseconds instead of a second.
    return get_session()


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    """Translate botocore's exceptions into the storage interface's."""
    try:
        yield
    except ClientError as e:
        if _code(e) in _MISSING:
            raise NotFound(what) from None
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if _code(e) in _FULL or status == 507:
            raise StorageFull("s3 storage", f"storage full: {what}: {e}") from e
        if status >= 500 or status == 429:  # S3's own trouble (SlowDown, InternalError...)
            raise StorageUnavailable("s3 storage", f"{what}: {e}") from e
        raise StorageError(f"s3 {what}: {e}") from e
    except (BotoCoreError, aiohttp.ClientError, TimeoutError) as e:
        # connection refused or timed out, mid-body included: the storage is not there
        raise StorageUnavailable("s3 storage", f"{what}: {e}") from e


class S3Backend:
    min_part_size = 5 * MiB
    max_part_size = 5 * GiB

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        addressing_style: str | None = None,
        redirect: bool = False,
        part_size: int = 8 * MiB,
        copy_threshold: int = 5 * GiB,
        copy_part_size: int = 512 * MiB,
        max_pool_connections: int = 32,
        page_size: int = 1000,
        max_attempts: int = 5,
        connect_timeout: int = 10,
    ) -> None:
        if not bucket:
            raise ValueError("s3 storage needs a bucket: s3://BUCKET/PREFIX")
        if addressing_style not in (None, "auto", "path", "virtual"):
            raise ValueError(
                f"s3 addressing_style must be auto, path or virtual, not {addressing_style!r}"
            )
        if not self.min_part_size <= part_size <= self.max_part_size:
            raise ValueError("s3 part_size must be between 5 MiB and 5 GiB")
        if not self.min_part_size <= copy_part_size <= self.max_part_size:
            raise ValueError("s3 copy_part_size must be between 5 MiB and 5 GiB")
        if max_attempts < 1 or connect_timeout < 1:
            raise ValueError("s3 max_attempts and connect_timeout must be at least 1")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self.access_key = access_key
        self.secret_key = secret_key
        self.session_token = session_token
        self.addressing_style = addressing_style
        self.redirect = redirect
        self.part_size = part_size
        self.copy_threshold = min(copy_threshold, 5 * GiB)  # CopyObject's own limit
        self.copy_part_size = copy_part_size
        self.max_pool_connections = max_pool_connections
        self.page_size = page_size  # keys per ListObjectsV2/ListParts request (S3: at most 1000)
        # How long an outage takes to become a 503: attempts per request, seconds per connect.
        self.max_attempts = max_attempts
        self.connect_timeout = connect_timeout
        self._stack: AsyncExitStack | None = None
        self._s3: Any = None

    @classmethod
    def from_options(cls, bucket: str, prefix: str, options: Mapping[str, object]) -> S3Backend:
        """Build from loosely typed options (URL query strings, YAML), checking each one."""
        strings = ("endpoint_url", "region", "access_key", "secret_key", "session_token")
        ints = (
            "part_size",
            "copy_threshold",
            "copy_part_size",
            "max_pool_connections",
            "page_size",
            "max_attempts",
            "connect_timeout",
        )
        kwargs: dict[str, Any] = {}
        for name, value in options.items():
            if name in strings or name == "addressing_style":
                kwargs[name] = _as_str(name, value)
            elif name in ints:
                kwargs[name] = _as_int(name, value)
            elif name == "redirect":
                kwargs[name] = _as_bool(name, value)
            else:
                raise ValueError(f"unknown s3 storage option {name!r}")
        return cls(bucket, prefix, **kwargs)

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._s3 is not None:
            return
        s3_config: dict[str, Any] = {}
        if self.addressing_style:
            s3_config["addressing_style"] = self.addressing_style
        config = AioConfig(
            s3=s3_config,
            # Checksums only where S3 demands them (DeleteObjects): SigV4 already covers the
            # payload, and a second pass over every part costs CPU on the hot path.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            connect_timeout=self.connect_timeout,
            # Presigned redirect URLs signed with SigV4 (botocore would presign with SigV2,
            # which newer S3s refuse and which cannot bind the expiry as tightly).
            signature_version="s3v4",
            max_pool_connections=self.max_pool_connections,
        )
        stack = AsyncExitStack()
        # None falls through to botocore's standard sources: AWS_ACCESS_KEY_ID,
        # AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3 /
        # AWS_ENDPOINT_URL, ~/.aws/config and credentials, instance roles.
        self._s3 = await stack.enter_async_context(
            _session().create_client(
                "s3",
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                aws_session_token=self.session_token,
                config=config,
            )
        )
        self._stack = stack
        # Fail at start, with a clear message, on a wrong bucket, endpoint or credentials.
        try:
            await self._s3.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as e:
            await self.close()
            where = self.endpoint_url or "the default AWS endpoint"
            raise StorageError(f"s3 bucket {self.bucket!r} at {where} is not usable: {e}") from e

    async def close(self) -> None:
        stack, self._stack, self._s3 = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @property
    def _client(self) -> Any:
        if self._s3 is None:
            raise StorageError("s3 backend used before open()")
        return self._s3

    @property
    def _pages(self) -> dict[str, Any]:
        return {"PaginationConfig": {"PageSize": self.page_size}}

    def _key(self, path: str) -> str:
        check_path(path)
        return f"{self.prefix}/{path}" if self.prefix else path

    def _dir_key(self, prefix: str) -> str:
        """The S3 key prefix of a directory: `<prefix>/<dir>/`, or `<prefix>/` at the root."""
        base = check_prefix(prefix)
        full = "/".join(p for p in (self.prefix, base) if p)
        return f"{full}/" if full else ""

    # -- small objects -----------------------------------------------------------------------

    async def get(self, path: str) -> bytes:
        key = self._key(path)
        with _errors(path):
            response = await self._client.get_object(Bucket=self.bucket, Key=key)
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data

    async def put(self, path: str, data: bytes) -> None:
        key = self._key(path)
        with _errors(path):
            await self._client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data))

    # -- streams -----------------------------------------------------------------------------

    async def stream(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        key = self._key(path)
        if length == 0:
            await self.stat(path)  # NotFound for a missing object, nothing otherwise
            return
        end = None if length is None else offset + length  # exclusive
        position = offset
        etag: str | None = None
        failures = 0
        while True:
            response = await self._get_range(path, key, position, end, length, etag)
            if response is None:
                return  # offset at or past the end
            etag = etag or response.get("ETag")
            try:
                async with response["Body"] as body:
                    while piece := await body.read(CHUNK_SIZE):
                        position += len(piece)
                        failures = 0
                        yield piece
                return
            except (BotoCoreError, aiohttp.ClientError, TimeoutError) as e:
                # The connection broke mid-body: resume from where it stopped, on the same
                # version of the object (If-Match), instead of failing a long download.
                failures += 1
                if failures > _STREAM_RESUMES:
                    raise StorageUnavailable(
                        "s3 storage", f"{path}: reading failed at byte {position}: {e}"
                    ) from e

    async def _get_range(
        self,
        path: str,
        key: str,
        position: int,
        end: int | None,
        length: int | None,
        etag: str | None,
    ) -> Any:
        """GetObject from `position` (to `end`); None when there is nothing to read there."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if position or length is not None:
            params["Range"] = f"bytes={position}-{'' if end is None else end - 1}"
        if etag is not None:
            params["IfMatch"] = etag
        try:
            with _errors(path):
                return await self._client.get_object(**params)
        except StorageError as e:
            cause = e.__cause__
            if isinstance(cause, ClientError) and _code(cause) == "InvalidRange":
                if etag is not None:
                    return None  # resumed exactly at the end
                # Offset at or past the end (or an empty object): nothing to send, if it exists.
                await self.stat(path)
                return None
            raise

    async def put_stream(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        key = self._key(path)
        buffer = bytearray()
        total = 0
        upload_id: str | None = None
        parts: list[Part] = []
        try:
            async for chunk in chunks:
                buffer += chunk
                total += len(chunk)
                part_size = self._part_size(len(parts))
                while len(buffer) >= part_size:
                    if upload_id is None:
                        upload_id = await self.multipart_create(path)
                    with memoryview(buffer) as view:
                        piece = bytes(view[:part_size])  # the one copy
                    del buffer[:part_size]
                    parts.append(await self._upload_part(path, upload_id, len(parts) + 1, piece))
                    part_size = self._part_size(len(parts))
            if upload_id is None:
                with _errors(path):
                    await self._client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer))
                return total
            if buffer:
                parts.append(
                    await self._upload_part(path, upload_id, len(parts) + 1, bytes(buffer))
                )
            await self.multipart_complete(path, upload_id, parts)
        except BaseException:
            if upload_id is not None:
                with contextlib.suppress(StorageError):
                    await self.multipart_abort(path, upload_id)
            raise
        return total

    def _part_size(self, parts_so_far: int) -> int:
        # Double every 1000 parts: 10000 parts then reach far beyond any blob size.
        return min(self.part_size << (parts_so_far // 1000), self.max_part_size)

    # -- metadata ----------------------------------------------------------------------------

    async def stat(self, path: str) -> Stat:
        key = self._key(path)
        with _errors(path):
            head = await self._client.head_object(Bucket=self.bucket, Key=key)
        return Stat(int(head["ContentLength"]), head["LastModified"].timestamp())

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except NotFound:
            return False
        return True

    async def batch(self, ops: Sequence[Op]) -> list[Result]:
        return await run_each(self, ops)  # one request per operation, side by side

    async def rounds(self, plan: Plan[_T]) -> _T:
        return await run_rounds(self.batch, plan)  # each round's requests side by side

    async def list_dir(
        self, prefix: str, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        if start_after is not None or limit is not None:
            return await self._list_page(prefix, start_after, limit)
        start = self._dir_key(prefix)
        names: set[str] = set()
        paginator = self._client.get_paginator("list_objects_v2")
        with _errors(prefix or "/"):
            async for page in paginator.paginate(
                Bucket=self.bucket, Prefix=start, Delimiter="/", **self._pages
            ):
                for common in page.get("CommonPrefixes", []):
                    names.add(common["Prefix"][len(start) :].rstrip("/"))
                for obj in page.get("Contents", []):
                    names.add(obj["Key"][len(start) :])
        names.discard("")  # a "folder marker" object whose key ends in "/"
        if not names and check_prefix(prefix):
            raise NotFound(prefix)
        return sorted(names)

    async def _list_page(
        self, prefix: str, start_after: str | None, limit: int | None
    ) -> list[str]:
        """One page of a directory, from S3's StartAfter: requests grow with the page, never
        with the directory. Exact for flat directories of objects (names are keys); a
        sub-prefix comes in S3's key order (`name/`)."""
        start = self._dir_key(prefix)
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": start, "Delimiter": "/"}
        if start_after is not None:
            request["StartAfter"] = start + start_after
        names: list[str] = []
        with _errors(prefix or "/"):
            while limit is None or len(names) < limit:
                # +1: a sub-prefix named `start_after` itself comes back and is skipped.
                wanted = self.page_size if limit is None else limit - len(names) + 1
                page = await self._client.list_objects_v2(
                    **request, MaxKeys=min(self.page_size, wanted)
                )
                found = [
                    c["Prefix"][len(start) :].rstrip("/") for c in page.get("CommonPrefixes", [])
                ]
                found += [o["Key"][len(start) :] for o in page.get("Contents", [])]
                names += sorted(n for n in found if n and (start_after is None or n > start_after))
                if not page.get("IsTruncated"):
                    break
                request["ContinuationToken"] = page["NextContinuationToken"]
        return names if limit is None else names[:limit]

    async def walk(self, prefix: str) -> AsyncIterator[str]:
        start = self._dir_key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self._client.get_paginator("list_objects_v2")
        # S3 lists keys in UTF-8 byte order, which is Python's str order.
        with _errors(prefix or "/"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=start, **self._pages):
                for obj in page.get("Contents", []):
                    if not obj["Key"].endswith("/"):
                        yield obj["Key"][strip:]

    # -- deletion and moves ------------------------------------------------------------------

    async def delete(self, path: str) -> None:
        key = self._key(path)
        with _errors(path):
            await self._client.delete_object(Bucket=self.bucket, Key=key)

    async def delete_prefix(self, prefix: str) -> None:
        start = self._dir_key(prefix)
        paginator = self._client.get_paginator("list_objects_v2")
        with _errors(prefix or "/"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=start, **self._pages):
                keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if not keys:
                    continue
                result = await self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                )
                if result.get("Errors"):
                    raise StorageError(f"s3 delete_prefix {prefix}: {result['Errors'][:3]}")

    async def move(self, src: str, dst: str) -> None:
        src_key, dst_key = self._key(src), self._key(dst)
        size = (await self.stat(src)).size
        if src_key == dst_key:
            return  # S3 refuses to copy an object onto itself unchanged
        source = {"Bucket": self.bucket, "Key": src_key}
        with _errors(src):
            if size <= self.copy_threshold:
                await self._client.copy_object(Bucket=self.bucket, Key=dst_key, CopySource=source)
            else:
                await self._multipart_copy(dst, source, size)
            await self._client.delete_object(Bucket=self.bucket, Key=src_key)

    async def _multipart_copy(self, dst: str, source: dict[str, str], size: int) -> None:
        """Server-side copy of an object too large for CopyObject, in UploadPartCopy ranges."""
        upload_id = await self.multipart_create(dst)
        try:
            parts = []
            for number, start in enumerate(range(0, size, self.copy_part_size), start=1):
                end = min(size, start + self.copy_part_size) - 1
                result = await self._client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=self._key(dst),
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={start}-{end}",
                )
                etag = result["CopyPartResult"]["ETag"]
                parts.append(Part(number, end - start + 1, etag))
            await self.multipart_complete(dst, upload_id, parts)
        except BaseException:
            with contextlib.suppress(StorageError):
                await self.multipart_abort(dst, upload_id)
            raise

    # -- multipart ---------------------------------------------------------------------------

    async def multipart_create(self, path: str) -> str:
        key = self._key(path)
        with _errors(path):
            result = await self._client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id: str = result["UploadId"]
        return upload_id

    async def multipart_upload_part(
        self,
        path: str,
        upload_id: str,
        number: int,
        chunks: AsyncIterable[bytes],
        size: int | None = None,
    ) -> Part:
        if size is None:
            raise StorageError(
                "s3 multipart parts need their exact size: coalesce into a bounded buffer first"
            )
        if not 0 <= size <= self.max_part_size:
            raise StorageError(f"s3 part of {size} bytes is larger than 5 GiB")
        pieces: list[bytes] = []
        received = 0
        async for chunk in chunks:
            received += len(chunk)
            if received > size:
                raise StorageError(f"part {number}: more than the {size} bytes announced")
            pieces.append(chunk)
        if received != size:
            raise StorageError(f"part {number}: expected {size} bytes, got {received}")
        # One piece (the usual case: the caller already coalesced) is sent without a copy.
        data = bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)
        return await self._upload_part(path, upload_id, number, data)

    async def _upload_part(self, path: str, upload_id: str, number: int, data: bytes) -> Part:
        if not 1 <= number <= 10000:
            raise StorageError(f"part number {number} out of range 1..10000")
        with _errors(f"{path} (multipart {upload_id})"):
            result = await self._client.upload_part(
                Bucket=self.bucket,
                Key=self._key(path),
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentLength=len(data),
            )
        return Part(number, len(data), str(result["ETag"]))

    async def multipart_list_parts(self, path: str, upload_id: str) -> list[Part]:
        key = self._key(path)
        parts: list[Part] = []
        paginator = self._client.get_paginator("list_parts")
        with _errors(f"{path} (multipart {upload_id})"):
            async for page in paginator.paginate(
                Bucket=self.bucket, Key=key, UploadId=upload_id, **self._pages
            ):
                for p in page.get("Parts", []):
                    parts.append(Part(int(p["PartNumber"]), int(p["Size"]), str(p["ETag"])))
        return sorted(parts, key=lambda p: p.number)

    async def multipart_complete(self, path: str, upload_id: str, parts: list[Part]) -> None:
        if not parts:
            raise StorageError("multipart complete: no parts")
        numbers = [p.number for p in parts]
        if numbers != sorted(set(numbers)):
            # AWS refuses these (InvalidPartOrder), RGW sorts them: refuse on every S3 alike.
            raise StorageError("multipart complete: parts not in ascending order")
        # List first. A vanished (aborted, purged) upload is NotFound at once: RGW answers its
        # completion with a 500 that botocore retries for ~10 s. And parts this session never
        # recorded (uploaded by a request that died before saving its state) are found: AWS
        # leaves unlisted parts out, RGW refuses a completion that does not name them all.
        listed = await self.multipart_list_parts(path, upload_id)
        wanted = set(numbers)
        if all(p.number in wanted for p in listed):
            await self._complete(path, upload_id, parts)
        else:
            await self._complete_without_strays(path, upload_id, parts, listed)

    async def _complete(self, path: str, upload_id: str, parts: list[Part]) -> None:
        with _errors(f"{path} (multipart {upload_id})"):
            await self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self._key(path),
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]
                },
            )

    async def _complete_without_strays(
        self, path: str, upload_id: str, parts: list[Part], listed: list[Part]
    ) -> None:
        """Complete with every listed part (as RGW demands), then rewrite the object from the
        wanted parts' byte ranges with UploadPartCopy: server-side, only on this crash path."""
        have = {p.number: p for p in listed}
        for p in parts:
            known = have.get(p.number)
            if known is None or (p.etag and known.etag != p.etag):
                raise StorageError(f"multipart complete: part {p.number} unknown or changed")
        offsets: dict[int, int] = {}
        offset = 0
        for p in listed:
            offsets[p.number] = offset
            offset += p.size
        await self._complete(path, upload_id, listed)
        source = {"Bucket": self.bucket, "Key": self._key(path)}
        rewrite = await self.multipart_create(path)
        try:
            copied = []
            with _errors(f"{path} (rewrite without stray parts)"):
                for number, p in enumerate(parts, start=1):
                    start = offsets[p.number]
                    result = await self._client.upload_part_copy(
                        Bucket=self.bucket,
                        Key=self._key(path),
                        UploadId=rewrite,
                        PartNumber=number,
                        CopySource=source,
                        CopySourceRange=f"bytes={start}-{start + p.size - 1}",
                    )
                    copied.append(Part(number, p.size, result["CopyPartResult"]["ETag"]))
            await self._complete(path, rewrite, copied)
        except BaseException:
            with contextlib.suppress(StorageError):
                await self.multipart_abort(path, rewrite)
            raise

    async def multipart_abort(self, path: str, upload_id: str) -> None:
        key = self._key(path)
        try:
            with _errors(path):
                await self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
        except NotFound:
            pass  # already completed or aborted

    async def sweep_leftovers(
        self, prefix: str, older_than: float, keep: Keep | None = None
    ) -> int:
        """Abort multipart uploads below `prefix` with no part newer than `older_than` seconds
        (S3 writes have no temp objects; an incomplete multipart upload is the leftover)."""
        cutoff = time.time() - older_than
        swept = 0
        paginator = self._client.get_paginator("list_multipart_uploads")
        stale: list[tuple[str, str]] = []
        with _errors(f"{prefix} (multipart uploads)"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self._dir_key(prefix)):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"].timestamp() < cutoff:
                        stale.append((str(upload["Key"]), str(upload["UploadId"])))
        for key, upload_id in stale:
            with _errors(f"{key} (multipart {upload_id})"):
                newest = 0.0
                try:
                    async for page in self._client.get_paginator("list_parts").paginate(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    ):
                        for part in page.get("Parts", []):
                            newest = max(newest, part["LastModified"].timestamp())
                except ClientError as e:
                    if _code(e) in _MISSING:
                        continue  # completed or aborted meanwhile
                    raise
                if newest >= cutoff:
                    continue  # a slow upload still sending parts
                path = key.removeprefix(f"{self.prefix}/") if self.prefix else key
                if keep is not None and await keep(path):
                    continue
                try:
                    await self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    )
                except ClientError as e:
                    if _code(e) not in _MISSING:
                        raise
                    continue
                swept += 1
        return swept

    async def redirect_url(self, path: str, expires_in: int = 1200) -> str | None:
        key = self._key(path)
        if not self.redirect:
            return None
        with _errors(path):
            url: str = await self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=expires_in,
            )
        return url
