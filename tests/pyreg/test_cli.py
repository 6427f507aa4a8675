"""`pyreg` dispatch: client commands start without the server's imports, every command still
parses, and `pyreg` alone lists both sides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyreg.cli import CLIENT_MODULES, COMMANDS, SERVER_MODULES, build_parser, main, parser_for

# What only the server needs; a client command importing any of these pays for nothing.
SERVER_ONLY = ("starlette", "uvicorn", "jwt", "cryptography", "bcrypt", "yaml", "registry")
# Pulled in by httpx's own command-line client, or by progress bars `--quiet` does not draw.
UNUSED = ("click", "pygments", "rich")


def _python(code: str, tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter running `code`, with a pyreg home of its own."""
    env = {**os.environ, "PYREG_HOME": str(tmp_path / "home")}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )


def _modules_after(argv: list[str], tmp_path: Path) -> set[str]:
    """Top-level packages imported by a fresh interpreter running `pyreg ARGV`."""
    code = (
        "import json, sys\n"
        "from pyreg.cli import main\n"
        f"code = main({argv!r})\n"
        "print(json.dumps([code, sorted({m.split('.')[0] for m in sys.modules})]))\n"
    )
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    status, modules = json.loads(done.stdout.splitlines()[-1])
    assert status == 0
    return set(modules)


def test_client_command_imports_no_server_module(tmp_path: Path) -> None:
    modules = _modules_after(["images", "-q"], tmp_path)
    assert "puller" in modules
    assert not modules & {*SERVER_ONLY, *UNUSED}


def test_every_command_parses_through_parser_for() -> None:
    full = build_parser()
    commands = _commands(full)
    assert {"serve", "user", "gc", "pull", "push"} <= commands
    for command in commands:
        assert command in _commands(parser_for([command, "--help"]))


def test_client_commands_come_from_the_client_modules_only() -> None:
    client_only = parser_for(["pull"])
    assert "serve" not in _commands(client_only)
    assert _commands(client_only) < _commands(build_parser())
    assert "puller.cli" in CLIENT_MODULES and "registry.cli" in SERVER_MODULES
    assert not set(CLIENT_MODULES) & set(SERVER_MODULES)


@pytest.mark.parametrize("argv", [[], ["--version"], ["no-such-command"]])
def test_help_and_unknown_commands_see_every_command(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code: int | str | None = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    if argv == ["--version"]:
        assert code == 0 and out.startswith("pyreg ")
        return
    assert code == 2
    text = out + err
    for command in ("serve", "gc", "user", "pull", "push"):
        assert command in text


def test_help_imports_no_command_module(tmp_path: Path) -> None:
    """`pyreg --help` lists the commands from the table: not one of their modules (the
    server's cost ~0.9 s of CPU), not even the client's HTTP stack."""
    code = (
        "import json, sys\n"
        "from pyreg.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "names = {m.split('.')[0] for m, mod in sys.modules.items() if mod is not None}\n"
        "print(json.dumps(sorted(names)))\n"
    )
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    for command in ("serve", "gc", "user", "pull", "push", "build", "run"):
        assert f"    {command}" in done.stdout
    modules = set(json.loads(done.stdout.splitlines()[-1]))
    assert not modules & {*SERVER_ONLY, *UNUSED, "httpx", "puller", "runtime", "builder"}


def test_the_command_table_is_what_the_modules_register() -> None:
    """Name, one-line help, order and module of every command, as `--help` lists them."""
    import argparse
    import importlib

    registered: list[tuple[str, tuple[str, str]]] = []
    for module in (*SERVER_MODULES, *CLIENT_MODULES):
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        registered += [(a.dest, (module, str(a.help))) for a in sub._choices_actions]
    assert registered == list(COMMANDS.items())


@pytest.mark.parametrize("command", ["serve", "user", "pull"])
def test_a_command_help_is_its_full_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    import argparse

    full = build_parser()
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    assert capsys.readouterr().out == sub.choices[command].format_help()


def _commands(parser: object) -> set[str]:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def test_a_command_line_run_does_not_import_trio(tmp_path: Path) -> None:
    """httpcore imports trio when it is installed (~0.15 s of CPU per run); `pyreg` from the
    command line makes that import fail. A request is made (to a closed port), so httpcore
    is imported."""
    import importlib.util

    if importlib.util.find_spec("trio") is None:
        pytest.skip("trio is not installed: nothing to keep out")
    code = (
        "import sys\n"
        "sys.argv = ['pyreg', 'tags', '127.0.0.1:9/x', '--insecure']\n"
        "from pyreg.cli import main\n"
        "status = main()\n"
        "print(status, 'httpcore' in sys.modules, sys.modules.get('trio') is not None)\n"
    )
    done = _python(code, tmp_path, timeout=120)
    assert done.stdout.split() == ["1", "True", "False"], done.stdout + done.stderr


def _gc_during_command(tmp_path: Path, probe: str) -> list[str]:
    """`pyreg images -q` in a fresh interpreter: its status, `probe` (an expression on `gc`)
    evaluated while the command runs, and `gc.isenabled()` afterwards."""
    code = (
        "import gc, sys\n"
        "import puller.cli\n"
        "seen = []\n"
        "real = puller.cli.cmd_images\n"
        "def spy(args):\n"
        f"    seen.append({probe})\n"
        "    return real(args)\n"
        "puller.cli.cmd_images = spy\n"
        "sys.argv = ['pyreg', 'images', '-q']\n"
        "from pyreg.cli import main\n"
        "status = main()\n"
        "print(status, seen, gc.isenabled())\n"
    )
    done = _python(code, tmp_path)
    out = done.stdout.split()
    assert len(out) == 3, done.stdout + done.stderr
    return out


def test_a_command_line_run_collects_garbage_while_the_command_runs(tmp_path: Path) -> None:
    """The cyclic GC is off while `pyreg` imports the command's modules (start-up CPU), and
    on again for the command itself: a pull or a push must not grow without bound."""
    assert _gc_during_command(tmp_path, "gc.isenabled()") == ["0", "[True]", "True"]


def test_a_command_line_run_freezes_what_the_imports_made(tmp_path: Path) -> None:
    """The objects the imports created are moved out of the collector's generations before
    the command runs: no collection during the command walks them again."""
    assert _gc_during_command(tmp_path, "gc.get_freeze_count() > 10000") == [
        "0",
        "[True]",
        "True",
    ]


@pytest.mark.parametrize("module", [*SERVER_MODULES, *CLIENT_MODULES])
def test_each_command_module_imports_on_its_own(module: str) -> None:
    """`pyreg COMMAND` imports only its command's module, first, in a fresh interpreter: an
    import cycle hidden by another module imported before it (as in one test process) breaks
    the command for real (`pyreg gc` once failed so)."""
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
