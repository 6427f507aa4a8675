"""The runtime's typed errors; the CLI prints them as one line and exits 1 (or `code`)."""

from __future__ import annotations


class ContainerError(Exception):
    """An expected failure of a container command, with a message for the user."""

    code = 1


class CommandNotFound(ContainerError):
    """The command is not an executable of the image (docker answers 127 too)."""

    code = 127


class NotPermitted(ContainerError):
    """Creating namespaces, mounts and cgroups needs root here."""


class NoSuchContainer(ContainerError):
    pass
