"""The builder's typed errors, naming the Dockerfile, the line and the instruction."""

from __future__ import annotations


class BuildError(Exception):
    """A build failed; the message says where and why."""


class DockerfileError(BuildError):
    def __init__(self, filename: str, line: int, instruction: str, message: str) -> None:
        where = f"{filename}:{line}" + (f": {instruction}" if instruction else "")
        super().__init__(f"{where}: {message}")
        self.filename = filename
        self.line = line
        self.instruction = instruction
