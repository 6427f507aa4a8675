"""registries.conf as podman reads it (regclient/registries_conf.py): which files, in which
order, prefix matching, mirrors per pull kind, blocked and insecure entries, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocispec.reference import Reference
from regclient import registries_conf
from regclient.registries_conf import (
    BlockedRegistry,
    PullSource,
    RegistriesConf,
    RegistriesConfError,
)

DIGEST = "sha256:" + "a" * 64


def _sources(text: str, ref: str) -> list[tuple[str, bool, bool]]:
    conf = RegistriesConf.from_text(text)
    return [
        (str(s.reference), s.insecure, s.mirror) for s in conf.pull_sources(Reference.parse(ref))
    ]


def test_mirrors_in_order_then_the_primary_with_the_rest_of_the_name() -> None:
    text = """
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "m1.example:5000/hub"
insecure = true
[[registry.mirror]]
location = "m2.example"
"""
    assert _sources(text, "docker.io/library/app:v1") == [
        ("m1.example:5000/hub/library/app:v1", True, True),
        ("m2.example/library/app:v1", False, True),
        ("docker.io/library/app:v1", False, False),
    ]
    # a name without a tag is `:latest`, as containers/image has it
    assert _sources(text, "busybox")[0][0] == "m1.example:5000/hub/library/busybox:latest"
    # no entry: the reference itself, nothing else
    assert _sources(text, "quay.io/x/y:1") == [("quay.io/x/y:1", False, False)]


def test_pull_from_mirror_and_mirror_by_digest_only() -> None:
    text = """
[[registry]]
location = "r.example"
[[registry.mirror]]
location = "digests.example"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tags.example"
pull-from-mirror = "tag-only"
[[registry.mirror]]
location = "all.example"
"""
    by_tag = [s[0].split("/")[0] for s in _sources(text, "r.example/a:1")]
    assert by_tag == ["tags.example", "all.example", "r.example"]
    by_digest = [s[0].split("/")[0] for s in _sources(text, f"r.example/a@{DIGEST}")]
    assert by_digest == ["digests.example", "all.example", "r.example"]
    forced = text.replace(
        'location = "r.example"', 'location = "r.example"\nmirror-by-digest-only = true'
    )
    assert [s[0] for s in _sources(forced, "r.example/a:1")] == ["r.example/a:1"]
    assert len(_sources(forced, f"r.example/a@{DIGEST}")) == 4


def test_longest_prefix_wins_at_a_name_boundary_and_location_rewrites() -> None:
    text = """
[[registry]]
prefix = "r.example"
location = "r.example"
[[registry.mirror]]
location = "host-mirror.example"
[[registry]]
prefix = "r.example/team"
location = "internal.example:5000/r/team"
[[registry]]
prefix = "*.wild.example"
insecure = true
"""
    assert _sources(text, "r.example/team/app:1") == [
        ("internal.example:5000/r/team/app:1", False, False)
    ]
    # `r.example/teamx` is not under the prefix `r.example/team`
    assert _sources(text, "r.example/teamx:1")[0][0] == "host-mirror.example/teamx:1"
    assert _sources(text, "a.wild.example/x:1") == [("a.wild.example/x:1", True, False)]
    assert _sources(text, "wild.example/x:1") == [("wild.example/x:1", False, False)]


def test_blocked_refuses_with_the_file_named(tmp_path: Path) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text(
        '[[registry]]\nprefix = "bad.example"\nlocation = "bad.example"\nblocked = true\n'
    )
    loaded = registries_conf.load(conf, home=tmp_path, system_file=tmp_path / "none.conf")
    with pytest.raises(BlockedRegistry, match=f"bad.example is blocked in {conf}"):
        loaded.pull_sources(Reference.parse("bad.example/x:1"))
    assert loaded.pull_sources(Reference.parse("good.example/x:1")) == [
        PullSource(Reference.parse("good.example/x:1"))
    ]


def test_version_1_block_and_insecure_lists() -> None:
    text = (
        '[registries.block]\nregistries = ["bad.example"]\n'
        '[registries.insecure]\nregistries = ["lab:5000"]\n'
    )
    with pytest.raises(BlockedRegistry):
        _sources(text, "bad.example/x")
    assert _sources(text, "lab:5000/x:1") == [("lab:5000/x:1", True, False)]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _entry(location: str, mirror: str) -> str:
    return f'[[registry]]\nlocation = "{location}"\n[[registry.mirror]]\nlocation = "{mirror}"\n'


def test_which_files_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    system = _write(tmp_path / "etc/registries.conf", _entry("r.example", "from-system"))
    system_dropin = _write(
        tmp_path / "etc/registries.conf.d/50-a.conf", _entry("s.example", "sys-d")
    )
    monkeypatch.delenv(registries_conf.ENV, raising=False)

    def files() -> list[Path]:
        return registries_conf.config_files(home=home, system_file=system)

    def mirror_of(location: str) -> str:
        found = RegistriesConf.from_files(files()).find(Reference.parse(f"{location}/x"))
        return found[0].mirrors[0].location if found else "-"

    assert files() == [system, system_dropin]
    assert (mirror_of("r.example"), mirror_of("s.example")) == ("from-system", "sys-d")
    # a later drop-in replaces the entry with the same prefix
    user_dropin = _write(
        home / ".config/containers/registries.conf.d/10-b.conf", _entry("r.example", "user-d")
    )
    assert files() == [system, system_dropin, user_dropin]
    assert mirror_of("r.example") == "user-d"
    # the per-user main file replaces the system file and the system drop-ins
    user = _write(home / ".config/containers/registries.conf", _entry("u.example", "from-user"))
    assert files() == [user, user_dropin]
    assert mirror_of("s.example") == "-"
    # CONTAINERS_REGISTRIES_CONF, then --registries-conf, name the main file
    env_file = _write(tmp_path / "env.conf", "")
    monkeypatch.setenv(registries_conf.ENV, str(env_file))
    assert files() == [env_file, system_dropin, user_dropin]
    flag = tmp_path / "flag.conf"
    assert registries_conf.config_files(flag, home=home, system_file=system)[0] == flag
    # a missing file is an empty one
    assert RegistriesConf.from_files([flag]).registries == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[registry]\n", "not valid TOML"),
        ('[[registry]]\nprefix = "a.example"\n', "has no location"),
        ('[[registry]]\nlocation = "a"\ninsecure = "yes"\n', "`insecure` must be true or false"),
        (
            '[[registry]]\nlocation = "a"\n[[registry.mirror]]\nlocation = "m"\n'
            'pull-from-mirror = "some"\n',
            "pull-from-mirror of m must be one of",
        ),
        ('[[registry]]\nlocation = "a"\n[[registry.mirror]]\ninsecure = true\n', "has no location"),
        ('[[registry]]\nprefix = "*.a.example"\nlocation = "b"\n', "cannot have a location"),
        ('[registries.block]\nregistries = ["x"]\n[[registry]]\nlocation = "a"\n', "mixes"),
    ],
)
def test_bad_files_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    conf = _write(tmp_path / "registries.conf", text)
    with pytest.raises(RegistriesConfError, match=message) as caught:
        registries_conf.load(conf, home=tmp_path, system_file=tmp_path / "none.conf")
    assert str(conf) in str(caught.value)
