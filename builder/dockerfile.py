"""Parse a Dockerfile into instructions: directives, comments, continuations, flags, forms.

Parser directives (`# escape=\\``, `# syntax=...`) are only recognised at the very top. A line
ending in the escape character continues on the next; comment lines inside a continuation
are dropped. `--flag=value` words directly after the instruction are its flags. An argument
that is a JSON array of strings is the exec form; anything else is the shell form. Variable
substitution happens later, while building, when ARG and ENV values are known.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from builder.errors import DockerfileError

INSTRUCTIONS = frozenset(
    {
        "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY",
        "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL",
        "HEALTHCHECK", "SHELL",
    }
)  # fmt: skip

# flags each instruction accepts (anything else is an error naming the line)
FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "RUN": frozenset({"network"}),
    "COPY": frozenset({"from", "chown", "chmod", "link"}),
    "ADD": frozenset({"chown", "chmod", "link", "checksum"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "start-interval", "retries"}),
}

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
_FLAG = re.compile(r"^--([a-z][a-z0-9-]*)(?:=(.*))?$")


@dataclass
class Instruction:
    keyword: str  # upper case
    raw: str  # the arguments after flags, continuation lines joined
    line: int  # where it starts
    flags: dict[str, str] = field(default_factory=dict)
    exec_form: list[str] | None = None  # the JSON array form, when given
    original: str = ""  # the whole instruction as written (one line), for history

    def __str__(self) -> str:
        return self.original


@dataclass
class Dockerfile:
    filename: str
    escape: str
    instructions: list[Instruction]

    def error(self, ins: Instruction | None, message: str) -> DockerfileError:
        if ins is None:
            return DockerfileError(self.filename, 0, "", message)
        return DockerfileError(self.filename, ins.line, ins.keyword, message)


def _directives(lines: list[str]) -> tuple[dict[str, str], int]:
    found: dict[str, str] = {}
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line.strip())
        if not m or m.group(1).lower() in found:
            return found, i
        found[m.group(1).lower()] = m.group(2)
    return found, len(lines)


def _split_flags(filename: str, line: int, keyword: str, rest: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    allowed = FLAGS.get(keyword, frozenset())
    while rest.startswith("--"):
        word, _, after = rest.partition(" ")
        m = _FLAG.match(word.strip())
        if not m:
            break
        name, value = m.group(1), m.group(2)
        if name not in allowed:
            raise DockerfileError(filename, line, keyword, f"unknown flag: --{name}")
        flags[name] = value if value is not None else "true"
        rest = after.lstrip()
    return flags, rest


def _exec_form(rest: str) -> list[str] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None  # not JSON: Docker takes it as the shell form
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    lines = text.splitlines()
    directives, start = _directives(lines)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(filename, 1, "", f"invalid escape character {escape!r}: \\ or `")
    instructions: list[Instruction] = []
    i = start
    while i < len(lines):
        first = i
        stripped = lines[i].strip()
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        joined = lines[first].lstrip()
        continuation = re.compile(re.escape(escape) + r"[ \t]*$")
        # as the frontend does: the escape character (and blanks after it) is removed and
        # the next line appended as it is; comment and empty lines in between are dropped
        while continuation.search(joined):
            joined = continuation.sub("", joined)
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1
            if i >= len(lines):
                break
            joined += lines[i]
            i += 1
        joined = joined.strip()
        keyword_text, _, rest = joined.partition(" ")
        keyword = keyword_text.upper()
        line = first + 1
        if keyword not in INSTRUCTIONS:
            raise DockerfileError(filename, line, keyword_text, "unknown instruction")
        rest = rest.strip()
        flags, rest = _split_flags(filename, line, keyword, rest)
        if not rest and keyword not in ("RUN",):
            raise DockerfileError(filename, line, keyword, "requires at least one argument")
        if keyword == "RUN" and not rest:
            raise DockerfileError(filename, line, keyword, "requires at least one argument")
        ins = Instruction(keyword, rest, line, flags, _exec_form(rest), joined)
        _check(filename, ins)
        instructions.append(ins)
    if not instructions:
        raise DockerfileError(filename, 0, "", "the file has no instructions")
    if instructions[0].keyword not in ("FROM", "ARG"):
        ins = instructions[0]
        raise DockerfileError(
            filename, ins.line, ins.keyword, "the first instruction must be FROM (or ARG)"
        )
    for ins in instructions:
        if ins.keyword == "FROM":
            break
        if ins.keyword != "ARG":
            raise DockerfileError(filename, ins.line, ins.keyword, "only ARG may come before FROM")
    return Dockerfile(filename, escape, instructions)


def _check(filename: str, ins: Instruction) -> None:
    """Syntax checks that need no variables (arity, forms)."""

    def fail(message: str) -> DockerfileError:
        return DockerfileError(filename, ins.line, ins.keyword, message)

    if ins.keyword in ("SHELL",) and ins.exec_form is None:
        raise fail("requires the arguments to be in JSON form")
    if ins.keyword in ("SHELL",) and not ins.exec_form:
        raise fail("requires at least one argument")
    if ins.keyword in ("COPY", "ADD") and ins.exec_form is None:
        if len(ins.raw.split()) < 2:
            raise fail("requires at least two arguments, a source and a destination")
    if ins.keyword in ("COPY", "ADD") and ins.exec_form is not None and len(ins.exec_form) < 2:
        raise fail("requires at least two arguments, a source and a destination")
    if ins.keyword == "FROM":
        words = ins.raw.split()
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].upper() != "AS"):
            raise fail("expects IMAGE [AS NAME]")
    if ins.keyword == "ONBUILD":
        inner = ins.raw.split(None, 1)[0].upper()
        if inner in ("ONBUILD", "FROM", "MAINTAINER"):
            raise fail(f"{inner} is not allowed as an ONBUILD trigger")
        if inner not in INSTRUCTIONS:
            raise fail(f"unknown instruction in trigger: {inner}")
    if ins.keyword == "HEALTHCHECK":
        kind = ins.raw.split(None, 1)[0].upper()
        if kind not in ("CMD", "NONE"):
            raise fail("expects CMD ... or NONE")
    if ins.keyword == "STOPSIGNAL" and len(ins.raw.split()) != 1:
        raise fail("expects exactly one signal")
    if ins.keyword in ("USER", "WORKDIR") and len(ins.raw.split()) != 1 and ins.keyword == "USER":
        raise fail("expects exactly one user")
