"""`python -m runtime.monitor PYREG_HOME ID`: the detached monitor of `pyreg run -d`.

Started in its own session with its output going to the container's log; runs the container
and records its exit, as the foreground `pyreg run` does itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

from puller.store import GraphStore
from runtime.containers import ContainerStore
from runtime.engine import Engine


def main(argv: list[str]) -> int:
    home, container_id = Path(argv[0]), argv[1]
    engine = Engine(GraphStore(home), ContainerStore(home))
    return engine.monitor(container_id).code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
