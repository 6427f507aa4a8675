"""The lean load generator: a worker process that sends prepared HTTP/1.1 request sequences
over plain blocking sockets, one keep-alive connection per concurrent stream (a thread each).

Why: on a 2-core machine an in-process httpx client spends about as much CPU as the server
it measures, so it caps the server and squeezes every ratio towards 1x. Here a request is one
preformatted header block and a `sendall` (small bodies go in the same call), large bodies go
out with `socket.sendfile` from the data file, and responses are read with `recv_into` a
reusable buffer and dropped (only their length is kept, or the body when it must be checked).
The threads spend their time in socket calls, which release the GIL.

Protocol (`python -m bench.lean`): one JSON job per line on stdin, one JSON answer per line on
stdout. A job is `{"host", "concurrency", "buffer", "sequences": [[op, ...], ...]}`; each
sequence runs in order on one connection, `concurrency` sequences at a time. An op:

- `method`, `path` (None: the `Location` of the previous answer in the sequence), `digest`
  (added as `?digest=` to the URL, keeping the Location's own query), `headers`;
- `body`: `[file, offset, length, suffix]` (bytes of a file plus a latin-1 suffix), with
  `range: true` a `Content-Range` of that part;
- checks: `expect` (status codes), `size` (the body's length), `tags` (entries in a
  tags/list answer).

The answer: `{"seconds": wall time of the sequences, "cpu": this process's user+system CPU
during them, "requests": n}` or `{"error": "POST /v2/... -> 400: body"}` for the first
failure (the other streams stop after their current sequence).
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

#: read whole into memory below this size; stream with sendfile above it
INLINE_LIMIT = 1024 * 1024
TIMEOUT = 300.0


class LoadError(RuntimeError):
    """A request failed or an answer was not what the scenario expects."""


@dataclass(frozen=True)
class Body:
    path: str
    offset: int
    length: int
    suffix: bytes
    inline: bytes | None  # the whole body, for small ones

    @property
    def size(self) -> int:
        return self.length + len(self.suffix)


@dataclass(frozen=True)
class Op:
    method: str
    path: str | None
    digest: str | None
    headers: bytes  # preformatted "Name: value\r\n" lines
    body: Body | None
    content_range: bool
    expect: tuple[int, ...]
    size: int | None
    tags: int | None


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes  # kept only when it must be checked (or for an error message)
    length: int


def _target(op: Op, location: str | None) -> str:
    if op.path is not None:
        target = op.path
    else:
        if location is None:
            raise LoadError(f"{op.method}: no Location from the previous answer to send it to")
        split = urlsplit(location)  # the reference registry answers an absolute URL
        target = split.path + (f"?{split.query}" if split.query else "")
    if op.digest is not None:
        target += ("&" if "?" in target else "?") + "digest=" + quote(op.digest, safe="")
    return target


class Connection:
    """One keep-alive HTTP/1.1 connection, reconnected when the server closes it."""

    def __init__(self, host: str, buffer: int) -> None:
        self.host = host
        name, _, port = host.rpartition(":")
        self.address = (name, int(port))
        self.sock: socket.socket | None = None
        self.buffer = bytearray(buffer)
        self.view = memoryview(self.buffer)
        self.pending = b""  # received but not yet consumed
        self.files: dict[str, BinaryIO] = {}

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.pending = b""
        for f in self.files.values():
            f.close()
        self.files.clear()

    def _socket(self) -> socket.socket:
        if self.sock is None:
            sock = socket.create_connection(self.address, timeout=TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = sock
            self.pending = b""
        return self.sock

    def request(self, op: Op, location: str | None) -> Response:
        sock = self._socket()
        target = _target(op, location)
        head = f"{op.method} {target} HTTP/1.1\r\nHost: {self.host}\r\n".encode() + op.headers
        body = op.body
        if body is None:
            if op.method != "GET":
                head += b"Content-Length: 0\r\n"
            sock.sendall(head + b"\r\n")
        else:
            head += b"Content-Length: %d\r\n" % body.size
            if op.content_range:
                head += b"Content-Range: %d-%d\r\n" % (body.offset, body.offset + body.size - 1)
            if body.inline is not None:
                sock.sendall(head + b"\r\n" + body.inline)
            else:
                sock.sendall(head + b"\r\n")
                self._sendfile(sock, body)
                if body.suffix:
                    sock.sendall(body.suffix)
        keep = op.tags is not None
        response = self._read_response(op.method, keep)
        if response.headers.get("connection", "").lower() == "close":
            self.sock = None
            sock.close()
        if response.status not in op.expect:
            detail = response.body[:300].decode("utf-8", "replace")
            raise LoadError(f"{op.method} {target} -> {response.status}: {detail}")
        if op.size is not None and response.length != op.size:
            raise LoadError(f"{op.method} {target}: {response.length} bytes, expected {op.size}")
        if op.tags is not None:
            tags = json.loads(response.body).get("tags") or []
            if len(tags) != op.tags:
                raise LoadError(f"{op.method} {target}: {len(tags)} tags, expected {op.tags}")
        return response

    def _sendfile(self, sock: socket.socket, body: Body) -> None:
        f = self.files.get(body.path)
        if f is None:
            f = self.files[body.path] = open(body.path, "rb")  # closed in close()
        sent = sock.sendfile(f, body.offset, body.length)
        if sent != body.length:
            raise LoadError(f"{body.path} is shorter than expected")

    # -- reading ---------------------------------------------------------------------------

    def _recv(self) -> bytes:
        assert self.sock is not None
        n = self.sock.recv_into(self.buffer)
        if n == 0:
            raise LoadError("the server closed the connection mid-response")
        return bytes(self.view[:n])

    def _readline(self) -> bytes:
        while (end := self.pending.find(b"\r\n")) < 0:
            self.pending += self._recv()
        line, self.pending = self.pending[:end], self.pending[end + 2 :]
        return line

    def _read(self, n: int, keep: bool) -> bytes:
        """Consume `n` body bytes; return them if `keep` (else only count them)."""
        kept = []
        if self.pending:
            piece, self.pending = self.pending[:n], self.pending[n:]
            n -= len(piece)
            if keep:
                kept.append(piece)
        assert self.sock is not None
        while n > 0:
            got = self.sock.recv_into(self.view[: min(n, len(self.buffer))])
            if got == 0:
                raise LoadError("the server closed the connection mid-body")
            n -= got
            if keep:
                kept.append(bytes(self.view[:got]))
        return b"".join(kept)

    def _read_response(self, method: str, keep: bool) -> Response:
        while b"\r\n\r\n" not in self.pending:
            self.pending += self._recv()
        head, self.pending = self.pending.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        keep = keep or status >= 300  # an error's body goes into the message
        if method == "HEAD" or status in (204, 304) or status < 200:
            return Response(status, headers, b"", 0)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return self._read_chunked(status, headers, keep)
        if "content-length" in headers:
            length = int(headers["content-length"])
            return Response(status, headers, self._read(length, keep), length)
        # no length: the body ends with the connection
        kept = [self.pending]
        self.pending = b""
        try:
            while piece := self._recv():
                kept.append(piece)
        except LoadError:
            pass
        self.close()
        body = b"".join(kept)
        return Response(status, headers, body, len(body))

    def _read_chunked(self, status: int, headers: dict[str, str], keep: bool) -> Response:
        kept = []
        length = 0
        while True:
            size = int(self._readline().split(b";", 1)[0], 16)
            if size == 0:
                while self._readline():  # trailers, then the empty line
                    pass
                break
            kept.append(self._read(size, keep))
            length += size
            self._readline()
        return Response(status, headers, b"".join(kept), length)


def _header_lines(headers: dict[str, str]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()


def _body(spec: list[Any] | None, cache: dict[tuple[str, int, int], bytes]) -> Body | None:
    if spec is None:
        return None
    path, offset, length, suffix = spec
    inline = None
    if length + len(suffix) <= INLINE_LIMIT:
        key = (path, offset, length)
        data = cache.get(key)
        if data is None:
            with open(path, "rb") as f:
                data = cache[key] = os.pread(f.fileno(), length, offset)
        inline = data + suffix.encode("latin-1")
    return Body(path, offset, length, suffix.encode("latin-1"), inline)


def parse_ops(sequences: list[list[dict[str, Any]]]) -> list[list[Op]]:
    cache: dict[tuple[str, int, int], bytes] = {}
    return [
        [
            Op(
                method=o["method"],
                path=o.get("path"),
                digest=o.get("digest"),
                headers=_header_lines(o.get("headers", {})),
                body=_body(o.get("body"), cache),
                content_range=bool(o.get("range")),
                expect=tuple(o["expect"]) if isinstance(o["expect"], list) else (o["expect"],),
                size=o.get("size"),
                tags=o.get("tags"),
            )
            for o in sequence
        ]
        for sequence in sequences
    ]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


def run(host: str, sequences: list[list[Op]], concurrency: int, buffer: int) -> dict[str, Any]:
    """Run the sequences, `concurrency` at a time: the answer described in the module doc."""
    order = itertools.count()  # next() is atomic under the GIL: a lock-free work queue
    errors: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        connection = Connection(host, buffer)
        try:
            while not stop.is_set():
                i = next(order)
                if i >= len(sequences):
                    return
                location: str | None = None
                for op in sequences[i]:
                    response = connection.request(op, location)
                    location = response.headers.get("location", location)
        except Exception as exc:  # any failure fails the job, never a hang
            errors.append(str(exc) if isinstance(exc, LoadError) else repr(exc))
            stop.set()
        finally:
            connection.close()

    threads = [
        threading.Thread(target=stream, name=f"lean-{n}", daemon=True)
        for n in range(max(1, min(concurrency, len(sequences))))
    ]
    cpu = _cpu()
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    cpu = _cpu() - cpu
    if errors:
        return {"error": errors[0]}
    return {"seconds": seconds, "cpu": cpu, "requests": sum(len(s) for s in sequences)}


def serve(lines: Any, out: Any) -> None:
    """Answer one job per input line until the input ends."""
    for line in lines:
        try:
            job = json.loads(line)
            sequences = parse_ops(job["sequences"])
            answer = run(job["host"], sequences, job["concurrency"], job["buffer"])
        except Exception as exc:  # any failure goes back as this job's error
            answer = {"error": f"load generator failed: {exc!r}\n{traceback.format_exc()}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
