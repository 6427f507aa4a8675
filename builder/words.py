"""Variable substitution and word splitting as the Dockerfile frontend does them.

`$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alternative}` (and `-`/`+` without the colon,
which test "set" rather than "set and non-empty"); single quotes keep text literal, double
quotes allow substitution, the escape character (`\\` or the `escape` directive's) keeps the
next character literal. Quotes are removed, as the frontend's shell-word lexer does.
"""

from __future__ import annotations

from collections.abc import Mapping


class SubstitutionError(ValueError):
    pass


def _name_end(text: str, i: int) -> int:
    j = i
    while j < len(text) and (text[j].isalnum() or text[j] == "_"):
        j += 1
    return j


def _variable(text: str, i: int, env: Mapping[str, str], escape: str) -> tuple[str, int]:
    """Expand the variable at text[i] == '$'; (value, index after it)."""
    if i + 1 >= len(text):
        return "$", i + 1
    if text[i + 1] == "{":
        close = _matching_brace(text, i + 2)
        if close < 0:
            raise SubstitutionError(f"missing '}}' in {text!r}")
        body = text[i + 2 : close]
        end = _name_end(body, 0)
        name, rest = body[:end], body[end:]
        if not name:
            raise SubstitutionError(f"bad substitution ${{{body}}}")
        value = env.get(name)
        if not rest:
            return value or "", close + 1
        for op in (":-", ":+", "-", "+"):
            if rest.startswith(op):
                word = expand(rest[len(op) :], env, escape)
                is_set = value is not None and (value != "" or not op.startswith(":"))
                if op.endswith("-"):
                    return (value or "") if is_set else word, close + 1
                return word if is_set else "", close + 1
        raise SubstitutionError(f"unsupported modifier in ${{{body}}}")
    end = _name_end(text, i + 1)
    if end == i + 1:
        return "$", i + 1
    return env.get(text[i + 1 : end], ""), end


def _matching_brace(text: str, i: int) -> int:
    depth = 1
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def split_words(
    text: str, env: Mapping[str, str], escape: str = "\\", *, substitute: bool = True
) -> list[str]:
    """Words of `text` split on unquoted whitespace, substituted and unquoted."""
    return _scan(text, env, escape, split=True, substitute=substitute)


def expand(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Substitute in one word, keeping its whitespace; quotes removed."""
    return _scan(text, env, escape, split=False, substitute=True)[0]


def _scan(
    text: str, env: Mapping[str, str], escape: str, *, split: bool, substitute: bool
) -> list[str]:
    """The one lexer of `split_words` (`split`) and `expand` (not `split`: one word, whitespace
    kept, more lenient: an escape inside double quotes always takes the next character and an
    unterminated quote is not an error)."""
    words: list[str] = []
    current: list[str] = []
    started = False
    i = 0
    quote: str | None = None
    while i < len(text):
        c = text[i]
        if split and quote is None and c.isspace():
            if started:
                words.append("".join(current))
                current, started = [], False
            i += 1
            continue
        started = True
        if c == escape and quote != "'":
            if i + 1 < len(text):
                nxt = text[i + 1]
                # inside double quotes only the special characters are escaped
                if split and quote == '"' and nxt not in ('"', "$", escape):
                    current.append(c)
                current.append(nxt)
                i += 2
            else:
                current.append(c)
                i += 1
            continue
        if c in ("'", '"'):
            if quote is None:
                quote = c
                i += 1
                continue
            if quote == c:
                quote = None
                i += 1
                continue
        if c == "$" and quote != "'" and substitute:
            value, i = _variable(text, i, env, escape)
            current.append(value)
            continue
        current.append(c)
        i += 1
    if not split:
        return ["".join(current)]
    if quote is not None:
        raise SubstitutionError(f"unterminated quote in {text!r}")
    if started:
        words.append("".join(current))
    return words
