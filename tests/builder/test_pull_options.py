"""`pyreg build` pulls a base image it lacks with `pyreg pull`'s options (puller/netopts.py):
a private repository on a TLS `pyreg serve` with a CA made by the test, reached only with the
--tls-verify / --cert-dir / --authfile given to `build`."""

from __future__ import annotations

from pathlib import Path

from tests.runtime.conftest import BASE, Pyreg, _cleanup
from tests.support.private_tls import private_tls_registry


def test_build_pulls_its_base_with_authfile_cert_dir_and_tls_verify(
    pyreg: Pyreg, tmp_path: Path
) -> None:
    with private_tls_registry(tmp_path) as reg:
        base, env, trust, authfile = f"{reg.host}/private/base:v1", reg.env, reg.trust, reg.authfile
        pyreg("tag", BASE, base, check=True, env=env)
        pyreg("push", *trust, "--authfile", str(authfile), base, check=True, env=env)
        context = tmp_path / "context"
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM {base}\nLABEL built=yes\n")
        # a second client home without the base image: `build` has to pull it
        fresh = Pyreg(tmp_path / "fresh-home")
        try:
            build = ["build", "-q", "-t", "out:1"]
            untrusted = fresh(*build, "--tls-verify=true", "--authfile", str(authfile),
                              str(context), env=env)  # fmt: skip
            assert untrusted.returncode == 1
            assert "--cert-dir" in untrusted.stderr, untrusted.stderr  # `pyreg pull`'s hint
            anonymous = fresh(*build, *trust, str(context), env=env)
            assert anonymous.returncode == 1
            assert f"log in with `pyreg login {reg.host}`" in anonymous.stderr, anonymous.stderr
            built = fresh(*build, *trust, "--authfile", str(authfile), str(context), env=env)
            assert built.returncode == 0, built.stderr
            assert built.stdout.strip().startswith("sha256:"), built.stdout
        finally:
            _cleanup(fresh.home)
