"""Operating the registry: health probes, Prometheus metrics, access and audit logs.

Modules (one job each):
- `health`: `GET /healthz` (the process serves) and `GET /readyz` (storage and auth answer).
- `metrics`: every metric's definition, the scrape registry (multiprocess-aware) and build info.
- `multiproc`: the PROMETHEUS_MULTIPROC_DIR that `pyreg serve` creates, shares and removes.
- `listener`: the separate metrics listener (`metrics.addr`, like distribution's http.debug).
- `middleware`: one pure ASGI middleware per request: request id, route template, timing,
  bytes, request metrics, the access-log line and the audit line of a state change.
- `storage`: `InstrumentedBackend`, a StorageBackend wrapper counting and timing operations
  (here, not in storage_backends/, which imports nothing above it).
- `audit`: the `registry.audit` lines (and the auth/GC counters that go with them).
- `logs`: text and JSON log formatters and the logging configuration `pyreg serve` hands uvicorn.

Importing `registry.observe.metrics` creates the metrics, so it must happen after `pyreg serve`
has set PROMETHEUS_MULTIPROC_DIR: modules imported while the command line is parsed (auth, GC)
import it lazily (see `audit`).
"""
