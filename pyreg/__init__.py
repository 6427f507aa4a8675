"""The `pyreg` command: the composition root joining the server's and the client's commands."""

__version__ = "0.1.0"
