"""Pull-through cache: mirror several upstream registries under local namespaces, keep serving
what is cached when they are down. See docs/proxy-cache.md.

Modules: `config` (the `proxy:` section), `mapping` (client name -> upstream and local name),
`middleware` (rewrites mirror-style pulls, refuses pushes), `hooks` (called by the handlers),
`cache` (manifests and blobs: TTL, revalidation, stale-if-error, single-flight), `blobfetch`
(stream to clients while storing and verifying), `lease` (one fetch across replicas),
`upstream` (regclient clients, upstream errors), `singleflight`, `stats`.
"""
