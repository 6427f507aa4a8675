"""Every storage key the registry uses, and nothing else: the one place that knows the layout.

```
<root>/
├── blobs/<alg>/<hh>/<hex>/data                 content, global, by digest (layers, configs,
│                                               and manifest bytes too); <hh> = hex[:2]
├── blobs/<alg>/<hh>/<hex>/touched               empty; rewritten whenever a push relies on the
│                                               blob, so online GC sees it is in use (registry.gc)
├── repositories/<name>/                        <name> may contain slashes (a/b/c)
│   ├── _layers/<alg>/<hex>/link                 blob visible in this repo (text: the digest)
│   ├── _manifests/revisions/<alg>/<hex>/link    manifest in this repo (JSON: digest, mediaType)
│   ├── _manifests/tag-index/<alg>/<hex>/<tag>   empty; reverse tag index: <tag> was set to
│   │                                            this digest (may be stale: re-check the tag);
│   │                                            not under revisions/, which GC walks for links
│   ├── _manifests/.tag-index                    empty; every tag of the repo has its marker
│   │                                            (absent: written before the index, scan once)
│   ├── _manifests/tags/<tag>                    tag -> JSON {digest, pushed: epoch seconds}
│   │                                            (older: the bare digest as text); one flat
│   │                                            object per tag, so key order is tag order
│   │                                            and a page of tags is one S3 list request
│   └── _referrers/<alg>/<hex>/<ralg>/<rhex>     one descriptor (JSON) per manifest whose
│                                                `subject` is <alg>:<hex>
├── _catalog/<encoded name>                      one empty marker per repository (no bucket walk);
│                                               flat and order-preserving (catalog_marker)
├── _gc/clock, _gc/trash/<alg>/<hex>             GC's storage-clock probe; blobs it is deleting
├── _events/queue/<ns>-<rand>.json              one pending event record (events + endpoints
│                                               still to deliver), oldest name first
├── _events/dead/<endpoint>/<ns>-<rand>.json     records an endpoint refused maxattempts times
├── _events/lease                                which process delivers events, until when
├── _proxy/checked/<name>/_tag/<tag>             pull-through cache: when a mirrored tag was last
│                                               confirmed with its upstream (JSON: time, digest)
├── _proxy/leases/<alg>/<hex>                    the replica fetching this blob from an upstream
│                                               now (JSON: owner, expires); registry.proxy
├── _proxy/access/<alg>/<hex>                    empty; its mtime: when the cache last served
│                                               the blob (least-recently-used eviction)
├── _quota/<id>/usage.json, blobs/<alg>/<hex>    a quota namespace's counted bytes, and one empty
│                                               marker per blob counted (registry.policies.quota)
├── _gc/last-run.json                            what the last `pyreg gc` did (its metrics)
├── _health/probe                                written by start-up checks, read by /readyz
├── _auth/token-key.pem                          the token signing key, generated on first start
│                                               when `auth.key` is not set (registry.auth.keys)
└── _uploads/<uuid>/                             one upload session (any process may continue it)
    ├── state.json                               offset, multipart id, parts, in-stream hash
    ├── tail-<random>                            bytes not yet a full part (min_part_size > 0)
    └── data                                     the multipart target, then the verified blob
                                                 before it moves to blobs/...
```

Names and tags are validated before they get here (ocispec.reference); the backend refuses
anything that could escape its root.
"""

from __future__ import annotations

from ocispec.digest import Digest

BLOBS = "blobs"
REPOSITORIES = "repositories"
CATALOG = "_catalog"
UPLOADS = "_uploads"
GC = "_gc"
AUTH_KEY = "_auth/token-key.pem"
EVENTS_QUEUE = "_events/queue"
EVENTS_DEAD = "_events/dead"
PROXY = "_proxy"
GC_LAST_RUN = f"{GC}/last-run.json"
HEALTH_PROBE = "_health/probe"
QUOTA = "_quota"


def blob_data(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/data"


def blob_touched(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/touched"


def blob_digest(key: str) -> Digest | None:
    """The digest of a `blobs/<alg>/<hh>/<hex>/data` key (as `walk` yields it), else None."""
    parts = key.split("/")
    if len(parts) != 5 or parts[0] != BLOBS or parts[4] != "data":
        return None
    try:
        return Digest.parse(f"{parts[1]}:{parts[3]}")
    except ValueError:
        return None


def quota_usage(namespace_id: str) -> str:
    """A quota namespace's usage (JSON: bytes); `namespace_id` from registry.policies.quota."""
    return f"{QUOTA}/{namespace_id}/usage.json"


def quota_blobs_dir(namespace_id: str) -> str:
    return f"{QUOTA}/{namespace_id}/blobs"


def quota_blob(namespace_id: str, digest: Digest) -> str:
    """Empty; the blob is counted in the namespace's usage (its size is the blob's)."""
    return f"{quota_blobs_dir(namespace_id)}/{digest.algorithm}/{digest.hex}"


def gc_clock() -> str:
    return f"{GC}/clock"


def gc_trash(digest: Digest) -> str:
    return f"{GC}/trash/{digest.algorithm}/{digest.hex}"


def layers_dir(name: str) -> str:
    return f"{repository(name)}/_layers"


def revisions_dir(name: str) -> str:
    return f"{repository(name)}/_manifests/revisions"


def link_digest(key: str, base: str) -> Digest | None:
    """The digest of a `<base>/<alg>/<hex>/link` key below `base`, else None."""
    rest = key[len(base) + 1 :].split("/") if key.startswith(base + "/") else []
    if len(rest) != 3 or rest[2] != "link":
        return None
    try:
        return Digest.parse(f"{rest[0]}:{rest[1]}")
    except ValueError:
        return None


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layer_link(name: str, digest: Digest) -> str:
    return f"{repository(name)}/_layers/{digest.algorithm}/{digest.hex}/link"


def manifest_revision_link(name: str, digest: Digest) -> str:
    return f"{repository(name)}/_manifests/revisions/{digest.algorithm}/{digest.hex}/link"


def tag_markers_dir(name: str, digest: Digest) -> str:
    return f"{repository(name)}/_manifests/tag-index/{digest.algorithm}/{digest.hex}"


def tag_marker(name: str, digest: Digest, tag: str) -> str:
    return f"{tag_markers_dir(name, digest)}/{tag}"


def tag_index_flag(name: str) -> str:
    return f"{repository(name)}/_manifests/.tag-index"


def tags_dir(name: str) -> str:
    return f"{repository(name)}/_manifests/tags"


def tag_link(name: str, tag: str) -> str:
    return f"{tags_dir(name)}/{tag}"


def referrers_dir(name: str, subject: Digest) -> str:
    return f"{repository(name)}/_referrers/{subject.algorithm}/{subject.hex}"


def referrer_entry(name: str, subject: Digest, referrer: Digest) -> str:
    return f"{referrers_dir(name, subject)}/{referrer.algorithm}/{referrer.hex}"


# Repository names use [a-z0-9._/-]. The marker must be one path segment (no '/') whose byte
# order equals the name's, so a catalog page is a StartAfter listing: '/' sorts just below
# '0', so it becomes '0' and every digit moves up one ('9' -> ':'); nothing else changes.
_ENCODE = str.maketrans("/0123456789", "0123456789:")
_DECODE = str.maketrans("0123456789:", "/0123456789")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-/")


def catalog_marker(name: str) -> str:
    return f"{CATALOG}/{catalog_encode(name)}"


def catalog_encode(name: str) -> str:
    return name.translate(_ENCODE)


def catalog_name(marker: str) -> str:
    return marker.translate(_DECODE)


def catalog_start_after(last: str) -> str:
    """A listing bound for names after `last` (any string, from a client): the encoding of its
    longest prefix made of name characters. Names after `last` are all after that prefix; the
    caller still filters by `name > last`."""
    end = next((i for i, c in enumerate(last) if c not in _NAME_CHARS), len(last))
    return catalog_encode(last[: min(end, 255)])  # no name is longer; S3 caps key length


def upload_dir(upload_id: str) -> str:
    return f"{UPLOADS}/{upload_id}"


def upload_state(upload_id: str) -> str:
    return f"{upload_dir(upload_id)}/state.json"


def upload_tail(upload_id: str, version: str) -> str:
    return f"{upload_dir(upload_id)}/tail-{version}"


def upload_data(upload_id: str) -> str:
    return f"{upload_dir(upload_id)}/data"


def event_record(record: str) -> str:
    """A queued event record; `record` is `<ns>-<rand>.json` (registry.events.queue names it)."""
    return f"{EVENTS_QUEUE}/{record}"


def event_dead_dir(endpoint: str) -> str:
    return f"{EVENTS_DEAD}/{endpoint}"


def event_dead(endpoint: str, record: str) -> str:
    return f"{event_dead_dir(endpoint)}/{record}"


def events_lease() -> str:
    return "_events/lease"


def proxy_tag_checked(name: str, tag: str) -> str:
    # `_tag` cannot be a name component (components start with [a-z0-9]): no clash with names
    return f"{PROXY}/checked/{name}/_tag/{tag}"


def proxy_lease(digest: Digest) -> str:
    return f"{PROXY}/leases/{digest.algorithm}/{digest.hex}"


def proxy_access(digest: Digest) -> str:
    return f"{PROXY}/access/{digest.algorithm}/{digest.hex}"
