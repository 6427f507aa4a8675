"""Caps on the uncompressed size of a layer and of all the layers of one pull.

A layer blob is verified by its digest, but that says nothing about what it inflates to: a
2 MB gzip bomb is gigabytes of tar. Unpacking counts the uncompressed bytes as they stream
and stops as soon as a cap is passed, before the rest is written. Defaults: 16 GiB per
layer, 64 GiB per pull; `PYREG_MAX_LAYER_SIZE` / `PYREG_MAX_PULL_SIZE` (or the pull flags
`--max-layer-size` / `--max-pull-size`) change them, in bytes or with a K/M/G/T suffix
(powers of 1024).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from puller.store.errors import LayerError

GiB = 1024**3
DEFAULT_MAX_LAYER_SIZE = 16 * GiB
DEFAULT_MAX_PULL_SIZE = 64 * GiB
ENV_MAX_LAYER_SIZE = "PYREG_MAX_LAYER_SIZE"
ENV_MAX_PULL_SIZE = "PYREG_MAX_PULL_SIZE"

_SIZE_RE = re.compile(r"(\d+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


class SizeCapExceeded(LayerError):
    """A layer (or the layers of one pull) inflates past its cap."""


def parse_size(text: str) -> int:
    """`123`, `512K`, `16M`, `16G`, `1TiB` (powers of 1024) as a positive number of bytes."""
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None or int(match.group(1)) <= 0:
        raise ValueError(f"not a size: {text!r} (bytes, or a number with K, M, G or T)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def human(n: int) -> str:
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        size = _UNITS[unit[0].lower()]
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True, slots=True)
class SizeCaps:
    layer: int = DEFAULT_MAX_LAYER_SIZE
    pull: int = DEFAULT_MAX_PULL_SIZE

    @classmethod
    def from_env(cls, layer: int | None = None, pull: int | None = None) -> SizeCaps:
        """Explicit values first, then the environment, then the defaults."""

        def pick(value: int | None, env: str, default: int) -> int:
            if value is not None:
                return value
            raw = os.environ.get(env)
            if not raw:
                return default
            try:
                return parse_size(raw)
            except ValueError as exc:
                raise ValueError(f"{env}: {exc}") from None

        return cls(
            pick(layer, ENV_MAX_LAYER_SIZE, DEFAULT_MAX_LAYER_SIZE),
            pick(pull, ENV_MAX_PULL_SIZE, DEFAULT_MAX_PULL_SIZE),
        )


class UnpackBudget:
    """The uncompressed bytes one pull may still unpack; layers unpack in threads, so the
    shared total is counted under a lock."""

    def __init__(self, caps: SizeCaps | None = None) -> None:
        self.caps = caps or SizeCaps.from_env()
        self.total = 0
        self._lock = threading.Lock()

    def refund(self, n: int) -> None:
        """Give back `n` bytes counted by an unpack that was abandoned (and is redone)."""
        with self._lock:
            self.total -= n

    def meter(self, layer: str) -> Callable[[int], None]:
        """A counter for one layer's uncompressed bytes; raises SizeCapExceeded past a cap."""
        seen = 0

        def count(n: int) -> None:
            nonlocal seen
            seen += n
            if seen > self.caps.layer:
                raise SizeCapExceeded(
                    f"layer {layer} is larger than {human(self.caps.layer)} uncompressed: "
                    f"refused (the layer size cap: {ENV_MAX_LAYER_SIZE} or --max-layer-size)"
                )
            with self._lock:
                self.total += n
                total = self.total
            if total > self.caps.pull:
                raise SizeCapExceeded(
                    f"layer {layer}: the image's layers pass {human(self.caps.pull)} "
                    f"uncompressed: refused (the pull size cap: {ENV_MAX_PULL_SIZE} or "
                    "--max-pull-size)"
                )

        return count
