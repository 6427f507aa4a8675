"""A finished client command ends without the interpreter's teardown (pyreg/exiting.py), with
its output flushed, its exit status and the atexit handlers run; anything else exits as
usual."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# A __main__ global whose finaliser says when the interpreter tears the modules down, an
# atexit handler, and os._exit saying that it was called; then `pyreg ARGV` as the console
# script runs it.
PROBE = """
import atexit, os, sys, threading, time
class Probe:
    def __del__(self, write=os.write):
        write(2, b"torn down\\n")
probe = Probe()
atexit.register(lambda: sys.stderr.write("atexit ran\\n"))
real_exit = os._exit
def ending(code, write=os.write):
    write(2, b"os._exit(%d)\\n" % code)
    real_exit(code)
os._exit = ending
if {thread}:
    threading.Thread(target=lambda: (time.sleep(3), os.write(2, b"thread done\\n"))).start()
sys.argv = ["pyreg", *{argv!r}]
from pyreg.cli import run
run()
"""


def _pyreg(
    tmp_path: Path, argv: list[str], thread: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYREG_HOME": str(tmp_path / "home")}
    code = PROBE.format(argv=argv, thread=thread)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_client_command_leaves_without_teardown(tmp_path: Path) -> None:
    done = _pyreg(tmp_path, ["images"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["REPOSITORY", "TAG"]  # the output was flushed
    assert "atexit ran\nos._exit(0)\n" in done.stderr
    assert "torn down" not in done.stderr


def test_a_failed_client_command_keeps_its_status_and_message(tmp_path: Path) -> None:
    done = _pyreg(tmp_path, ["rmi", "nosuch:v1"])
    assert done.returncode == 1
    assert "pyreg: error: no local image named" in done.stderr
    assert "atexit ran\nos._exit(1)\n" in done.stderr and "torn down" not in done.stderr


def test_another_running_thread_gets_the_normal_exit(tmp_path: Path) -> None:
    """A normal exit waits for non-daemon threads: ending the process under them would cut
    their work short."""
    done = _pyreg(tmp_path, ["images"], thread=True)
    assert done.returncode == 0, done.stderr
    assert "thread done" in done.stderr
    assert "os._exit" not in done.stderr


@pytest.mark.parametrize("argv", [["--version"], ["serve", "--help"]])
def test_other_commands_exit_as_usual(tmp_path: Path, argv: list[str]) -> None:
    done = _pyreg(tmp_path, argv)
    assert done.returncode == 0, done.stderr
    assert "atexit ran" in done.stderr and "os._exit" not in done.stderr
