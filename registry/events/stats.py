"""This process's event counters, as plain attributes another module (metrics) can export.

`STATS` is the one instance the recorder and the deliverer update. Counts are of events
(one record may hold several, e.g. a batch of pulls), except `failures`, counted in POSTs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class EndpointStats:
    delivered: int = 0  # events a receiver accepted (2xx/3xx)
    failures: int = 0  # POSTs that failed (connection error, timeout, 4xx/5xx)
    dead_lettered: int = 0  # events given up on after maxattempts, moved to _events/dead/
    last_error: str = ""


@dataclass
class DeliveryStats:
    recorded: int = 0  # events this process wrote to the queue
    pulls_dropped: int = 0  # pull events lost (buffer full or flush failed): best effort
    pending_records: int = 0  # queue records seen at the deliverer's last scan (capped)
    deliverer: bool = False  # whether this process holds the delivery lease now
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)

    def endpoint(self, name: str) -> EndpointStats:
        return self.endpoints.setdefault(name, EndpointStats())

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


STATS = DeliveryStats()
