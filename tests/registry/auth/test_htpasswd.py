from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import bcrypt
import pytest

from registry.auth.htpasswd import (
    Htpasswd,
    HtpasswdError,
    check_password,
    hash_cost,
    hash_password,
    parse,
    remove_user,
    set_user,
)


def test_hash_has_the_htpasswd_b_prefix_and_verifies() -> None:
    hashed = hash_password("s3cret", cost=4)
    assert hashed.startswith("$2y$04$")
    assert check_password("s3cret", hashed)
    assert not check_password("s3creT", hashed)


def test_unknown_user_never_verifies() -> None:
    assert not check_password("anything", None)


def test_accepts_2b_and_2a_hashes_from_other_tools() -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    assert hashed.startswith("$2b$")
    assert check_password("pw", hashed)
    assert check_password("pw", "$2a$" + hashed[4:])


def test_corrupt_hash_does_not_verify() -> None:
    assert not check_password("pw", "$2y$04$broken")


def test_refuses_empty_and_overlong_passwords() -> None:
    with pytest.raises(HtpasswdError):
        hash_password("", cost=4)
    with pytest.raises(HtpasswdError):
        hash_password("x" * 73, cost=4)


def test_parse_skips_comments_and_non_bcrypt_entries() -> None:
    text = "# users\n\nalice:$2y$04$abc\nold:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"
    assert parse(text) == {"alice": "$2y$04$abc"}
    with pytest.raises(HtpasswdError):
        parse("no-colon-here\n")


def test_set_user_adds_updates_and_keeps_other_lines(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "htpasswd"
    assert set_user(path, "alice", "one", cost=4) is False
    path.write_text("# keep me\n" + path.read_text())
    assert set_user(path, "bob", "two", cost=4) is False
    assert set_user(path, "alice", "three", cost=4) is True
    text = path.read_text()
    assert text.startswith("# keep me\n")
    users = parse(text)
    assert list(users) == ["alice", "bob"]
    assert check_password("three", users["alice"])
    assert not check_password("one", users["alice"])
    assert (path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["htpasswd"]  # no temp file left


@pytest.mark.parametrize("name", ["", "anonymous", "a:b", "a b", "-x", "x" * 200, "bob\n"])
def test_invalid_user_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(HtpasswdError):
        set_user(tmp_path / "h", name, "pw", cost=4)


def test_remove_user(tmp_path: Path) -> None:
    path = tmp_path / "h"
    set_user(path, "alice", "pw", cost=4)
    set_user(path, "bob", "pw", cost=4)
    assert remove_user(path, "alice") is True
    assert remove_user(path, "alice") is False
    assert list(parse(path.read_text())) == ["bob"]


async def test_htpasswd_reloads_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "h"
    users = Htpasswd(path)
    assert not await users.verify("alice", "pw")  # no file yet: nobody
    set_user(path, "alice", "pw", cost=4)
    assert await users.verify("alice", "pw")
    set_user(path, "alice", "new", cost=4)
    os.utime(path, ns=(1, 1))  # even a same-second rewrite is noticed (size/mtime stamp)
    assert await users.verify("alice", "new")
    assert not await users.verify("alice", "pw")
    assert not await users.verify("bob", "pw")


@pytest.mark.skipif(shutil.which("htpasswd") is None, reason="htpasswd (apache2-utils) missing")
def test_reads_files_written_by_apache_htpasswd(tmp_path: Path) -> None:
    path = tmp_path / "h"
    subprocess.run(["htpasswd", "-B", "-b", "-c", str(path), "carol", "pw"], check=True)
    assert Htpasswd(path).verify_sync("carol", "pw")


def test_concurrent_adds_lose_no_user(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "h"
    names = [f"user{i}" for i in range(12)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(lambda n: set_user(path, n, "pw", cost=4), names))
    assert sorted(parse(path.read_text())) == sorted(names)


def test_unknown_users_cost_as_much_as_known_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`htpasswd -B` hashes at cost 5; a dummy check at cost 12 for unknown names took ~100x
    longer than a wrong password, telling an attacker which user names exist."""
    path = tmp_path / "htpasswd"
    for name in ("alice", "bob"):
        set_user(path, name, "pw", cost=5)
    set_user(path, "carol", "pw", cost=4)
    checked: list[tuple[str, bytes]] = []
    real_checkpw = bcrypt.checkpw

    def recording_checkpw(password: bytes, hashed: bytes) -> bool:
        checked.append((hashed.decode()[4:6], hashed))
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", recording_checkpw)
    users = Htpasswd(path)
    assert not users.verify_sync("alice", "wrong")
    assert not users.verify_sync("nobody", "wrong")
    assert [cost for cost, _ in checked] == ["05", "05"]


@pytest.mark.parametrize(
    ("hashed", "cost"),
    [("$2y$05$" + "a" * 53, 5), ("$2b$12$" + "a" * 53, 12), ("$2y$x5$aa", None), ("", None)],
)
def test_hash_cost(hashed: str, cost: int | None) -> None:
    assert hash_cost(hashed) == cost


def test_every_check_does_the_work_of_the_highest_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Users with different bcrypt costs and unknown users answered in visibly different times
    (170 / 40 / 28 ms): the work is now 2**(highest cost) bcrypt rounds for every check, right
    or wrong, known or not. Counted, not timed, so it holds on a loaded machine."""
    path = tmp_path / "htpasswd"
    set_user(path, "cheap", "pw", cost=4)
    set_user(path, "middle", "pw", cost=5)
    set_user(path, "dear", "pw", cost=7)
    rounds: list[int] = []
    real_checkpw = bcrypt.checkpw

    def counting_checkpw(password: bytes, hashed: bytes) -> bool:
        cost = hash_cost(hashed.decode())
        assert cost is not None
        rounds[-1] += 2**cost
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)
    users = Htpasswd(path)
    outcomes = {}
    for name, password in [
        ("cheap", "pw"),
        ("cheap", "wrong"),
        ("middle", "wrong"),
        ("dear", "pw"),
        ("dear", "wrong"),
        ("nobody", "pw"),
    ]:
        rounds.append(0)
        outcomes[name, password] = users.verify_sync(name, password)
    assert rounds == [2**7] * 6
    assert outcomes == {
        ("cheap", "pw"): True,
        ("cheap", "wrong"): False,
        ("middle", "wrong"): False,
        ("dear", "pw"): True,
        ("dear", "wrong"): False,
        ("nobody", "pw"): False,
    }
