"""The builder's real-runc tests use the runtime's fixtures: a PYREG_HOME with a busybox base
image and `pyreg` as a real process (skipped with the reason where runc cannot run)."""

from __future__ import annotations

from tests.runtime.conftest import home, pyreg

__all__ = ["home", "pyreg"]
