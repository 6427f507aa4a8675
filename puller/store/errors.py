"""Typed errors of the local graph store."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the local graph store raises."""


class NotInStore(StoreError, KeyError):
    """A blob, layer or image that the store does not hold."""

    def __str__(self) -> str:
        # KeyError's str() quotes its argument; a plain message reads better in the CLI.
        return str(self.args[0]) if self.args else "not in store"


class LayerError(StoreError):
    """A layer blob that cannot be registered (bad compression, diff_id mismatch, unsafe tar)."""
