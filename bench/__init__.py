"""Side-by-side benchmark of pyreg against the reference registry and standard clients.

`python -m bench` (or `make bench`) starts pyreg's registry and the reference registry
(CNCF distribution, `docker-registry`) on loopback ports with filesystem storage in a temp
dir, generates the data once, and measures on it:

- server side (`bench.http_bench`): monolithic and chunked push of a large blob, its pull,
  many small blobs, manifest push/pull rate, tag listing, sent by the lean load generator
  (`bench.lean`, a worker process on blocking sockets) or, with `--load httpx`, by one httpx
  client streaming 1 MiB pieces;
- client side (`bench.client_bench`): push and pull of a generated multi-layer image with
  `pyreg`, `skopeo` and `podman`;
- server memory (`bench.rss`): peak RSS of each registry's process tree during the large blob.

Each measurement runs N times and reports the median (`bench.report`), as a table on stdout
and as JSON in bench/results/. Only loopback traffic; every peer that is missing is skipped
with a message.
"""
