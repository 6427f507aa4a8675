"""`pyreg run` of an image it lacks pulls it with `pyreg pull`'s options (puller/netopts.py):
a private repository on a TLS `pyreg serve` with a CA made by the test, reached only with
--tls-verify / --cert-dir / --authfile given to `run`, and its registries.conf."""

from __future__ import annotations

from pathlib import Path

from tests.runtime.conftest import BASE, Pyreg, _cleanup
from tests.support.private_tls import private_tls_registry


def test_run_pulls_with_authfile_cert_dir_and_tls_verify(pyreg: Pyreg, tmp_path: Path) -> None:
    with private_tls_registry(tmp_path) as reg:
        image, env, trust, authfile = f"{reg.host}/private/bb:v1", reg.env, reg.trust, reg.authfile
        pyreg("tag", BASE, image, check=True, env=env)
        pyreg("push", *trust, "--authfile", str(authfile), image, check=True, env=env)
        # a second client home without the image: `run` has to pull it
        fresh = Pyreg(tmp_path / "fresh-home")
        try:
            cmd = ["echo", "pulled and ran"]
            untrusted = fresh("run", "--rm", "--tls-verify=true", "--authfile", str(authfile),
                              image, *cmd, env=env)  # fmt: skip
            assert untrusted.returncode == 1
            assert "certificate" in untrusted.stderr.lower(), untrusted.stderr
            assert "--cert-dir" in untrusted.stderr  # `pyreg pull`'s hint, one line
            assert untrusted.stderr.count("\n") == 1, untrusted.stderr
            anonymous = fresh("run", "--rm", *trust, image, *cmd, env=env)
            assert anonymous.returncode == 1
            assert f"not authorized (UNAUTHORIZED); log in with `pyreg login {reg.host}`" in (
                anonymous.stderr
            ), anonymous.stderr
            ran = fresh("run", "--rm", *trust, "--authfile", str(authfile), image, *cmd, env=env)
            assert (ran.returncode, ran.stdout) == (0, "pulled and ran\n"), ran.stderr
        finally:
            _cleanup(fresh.home)


def test_run_refuses_a_blocked_registry_from_its_registries_conf(
    pyreg: Pyreg, tmp_path: Path
) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text('[[registry]]\nlocation = "blocked.example"\nblocked = true\n')
    done = pyreg("run", "--rm", "--registries-conf", str(conf), "blocked.example/x:1", "true")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"pyreg: error: registry blocked.example is blocked in {conf}"
    ), done.stderr
