"""builder.dockerfile: directives, comments, continuations, flags, forms, and errors that
name the file, the line and the instruction."""

from __future__ import annotations

import pytest

from builder.dockerfile import parse
from builder.errors import DockerfileError


def test_comments_continuations_flags_and_forms() -> None:
    df = parse(
        "# leading comment\n"
        "FROM base:v1 AS build\n"
        "\n"
        "RUN echo a \\\n"
        "  # a comment inside is dropped\n"
        "\n"
        "  && echo b\n"
        'COPY --chown=1:2 --from=build ["a b", "/c"]\n'
        'CMD ["sh", "-c", "x"]\n'
        "CMD [not json\n",
        "Dockerfile",
    )
    kinds = [(i.keyword, i.line) for i in df.instructions]
    assert kinds == [("FROM", 2), ("RUN", 4), ("COPY", 8), ("CMD", 9), ("CMD", 10)]
    run = df.instructions[1]
    assert run.raw == "echo a   && echo b" and run.exec_form is None
    copy = df.instructions[2]
    assert copy.flags == {"chown": "1:2", "from": "build"}
    assert copy.exec_form == ["a b", "/c"]
    assert df.instructions[3].exec_form == ["sh", "-c", "x"]
    assert df.instructions[4].exec_form is None  # not JSON: the shell form, as Docker does


def test_escape_directive_changes_the_continuation_character() -> None:
    df = parse("# escape=`\nFROM base\nRUN dir c:\\ `\n  && echo done\n")
    assert df.escape == "`"
    assert df.instructions[1].raw == "dir c:\\   && echo done"


def test_a_directive_after_a_comment_is_only_a_comment() -> None:
    df = parse("# hello\n# escape=`\nFROM base\nRUN a \\\n b\n")
    assert df.escape == "\\" and df.instructions[1].raw == "a  b"


def test_lowercase_instructions() -> None:
    df = parse("from base\nrun true\n")
    assert [i.keyword for i in df.instructions] == ["FROM", "RUN"]


@pytest.mark.parametrize(
    ("text", "line", "instruction", "message"),
    [
        ("FROM base\nFROB x\n", 2, "FROB", "unknown instruction"),
        ("FROM base\nCOPY --bogus=1 a b\n", 2, "COPY", "unknown flag: --bogus"),
        ("FROM base\nCOPY onlyone\n", 2, "COPY", "at least two arguments"),
        ("FROM base\n\nENV\n", 3, "ENV", "requires at least one argument"),
        ("RUN true\n", 1, "RUN", "first instruction must be FROM"),
        ("ARG A\nENV B=1\nFROM base\n", 2, "ENV", "only ARG may come before FROM"),
        ("FROM a b c d\n", 1, "FROM", "IMAGE [AS NAME]"),
        ("FROM base\nSHELL /bin/bash -c\n", 2, "SHELL", "JSON form"),
        ("FROM base\nONBUILD FROM other\n", 2, "ONBUILD", "not allowed"),
        ("FROM base\nHEALTHCHECK sometimes\n", 2, "HEALTHCHECK", "CMD ... or NONE"),
        ("# escape=x\nFROM base\n", 1, "", "invalid escape"),
        ("# only a comment\n", 0, "", "no instructions"),
    ],
)
def test_malformed_dockerfiles_name_file_line_and_instruction(
    text: str, line: int, instruction: str, message: str
) -> None:
    with pytest.raises(DockerfileError) as info:
        parse(text, "app/Dockerfile")
    err = info.value
    assert (err.filename, err.line, err.instruction) == ("app/Dockerfile", line, instruction)
    assert message in str(err)
    assert str(err).startswith(f"app/Dockerfile:{line}")
