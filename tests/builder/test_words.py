"""builder.words: ARG/ENV substitution and quote handling as the Dockerfile frontend does."""

from __future__ import annotations

import pytest

from builder.words import SubstitutionError, expand, split_words

ENV = {"A": "x", "EMPTY": "", "SP": "a b"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("$A ${A} pre${A}post", ["x", "x", "prexpost"]),
        ("${NOPE:-def} ${EMPTY:-def} ${EMPTY-def} ${NOPE-def}", ["def", "def", "", "def"]),
        ("${A:+alt} ${EMPTY:+alt} ${EMPTY+alt} ${NOPE:+alt}", ["alt", "", "alt", ""]),
        ("\"$A b\" '$A' \\$A", ["x b", "$A", "$A"]),
        ('k="v w" j=$SP', ["k=v w", "j=a b"]),
        ("${NOPE:-/usr/$A}", ["/usr/x"]),
        ("$ lone", ["$", "lone"]),
    ],
)
def test_split_words(text: str, words: list[str]) -> None:
    assert split_words(text, ENV) == words


def test_expand_keeps_spaces_and_the_escape_character_can_change() -> None:
    assert expand("$A  and  ${SP}", ENV) == "x  and  a b"
    assert expand("`$A $A", ENV, "`") == "$A x"


@pytest.mark.parametrize("text", ["${A", "${}", "${A?x}", '"open'])
def test_bad_substitutions_fail(text: str) -> None:
    with pytest.raises(SubstitutionError):
        split_words(text, ENV)


def test_expand_differs_from_split_words_only_where_it_always_did() -> None:
    # one lexer serves both: expand keeps whitespace, lets an escape inside double quotes
    # take any character, and lets an unterminated quote pass
    assert split_words('"a\\b\\$A" c  d', ENV) == ["a\\b$A", "c", "d"]
    assert expand('"a\\b\\$A" c  d', ENV) == "ab$A c  d"
    assert expand('"open $A', ENV) == "open x"
    assert expand("", ENV) == "" and split_words("  ", ENV) == []
