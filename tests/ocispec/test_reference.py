import pytest

from ocispec.reference import Reference, ReferenceError, valid_repository_name, valid_tag


@pytest.mark.parametrize(
    ("text", "registry", "repo", "tag"),
    [
        ("busybox", "docker.io", "library/busybox", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36"),
        ("localhost:5000/a/b:v1", "localhost:5000", "a/b", "v1"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", None),
        ("quay.io/org/img", "quay.io", "org/img", None),
        ("[::1]:5000/x:t", "[::1]:5000", "x", "t"),
        ("user/img", "docker.io", "user/img", None),
    ],
)
def test_parse(text: str, registry: str, repo: str, tag: str | None) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repo, tag)


def test_digest_reference_and_identifier() -> None:
    ref = Reference.parse("localhost:5000/a@sha256:" + "1" * 64)
    assert ref.tag is None and ref.identifier == "sha256:" + "1" * 64
    assert Reference.parse("localhost:5000/a").identifier == "latest"


def test_loopback() -> None:
    assert Reference.parse("localhost:5000/a").is_loopback
    assert Reference.parse("127.0.0.2:80/a").is_loopback
    assert Reference.parse("[::1]:5000/a").is_loopback
    assert not Reference.parse("example.com/a").is_loopback


@pytest.mark.parametrize("bad", ["", "a/UPPER", "a//b", "a/../b", "a:", "-a", "a@sha256:1"])
def test_invalid(bad: str) -> None:
    with pytest.raises(ReferenceError):
        Reference.parse(bad)


def test_repository_names() -> None:
    assert valid_repository_name("a/b-c/d__e.f")
    for bad in ["", "A", "a/", "/a", "a..b", "a/../b", "a%2Fb", "a_-b", "a" * 256]:
        assert not valid_repository_name(bad), bad


@pytest.mark.parametrize("name", ["a\n", "a/b\n"])
def test_trailing_newline_is_not_a_valid_name(name: str) -> None:
    # Python's `$` also matches before a final newline; the spec's grammar does not.
    assert not valid_repository_name(name)


@pytest.mark.parametrize("tag", ["v1\n", "latest\n"])
def test_trailing_newline_is_not_a_valid_tag(tag: str) -> None:
    assert not valid_tag(tag)
    with pytest.raises(ReferenceError):
        Reference.parse(f"localhost:5000/a:{tag}")
