from __future__ import annotations

import argparse
from typing import Any

import pytest

from pyreg.cli import build_parser
from registry import cli


def test_serve_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--storage", "--config", "--workers", "--log-level"):
        assert option in out


def _run(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> tuple[int, dict[str, Any]]:
    calls: dict[str, Any] = {}

    def fake_run(app: str, **kwargs: Any) -> None:
        calls.update(kwargs, app=app)

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.delenv("PYREG_PORT", raising=False)
    args = build_parser().parse_args(["serve", *argv])
    assert isinstance(args, argparse.Namespace)
    return cli.serve(args), calls


def test_flags_reach_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    code, calls = _run(monkeypatch, ["--port", "5555", "--storage", "memory://"])
    assert code == 0
    assert calls["app"] == "registry.app:create_app_from_env"
    assert calls["factory"] is True
    assert (calls["host"], calls["port"], calls["workers"]) == ("127.0.0.1", 5555, 1)


def test_non_loopback_without_auth_warns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(monkeypatch, ["--host", "0.0.0.0", "--storage", "memory://"])
    assert "without access control" in capsys.readouterr().err
    _run(monkeypatch, ["--host", "::1", "--storage", "memory://"])
    assert capsys.readouterr().err == ""


def test_bad_config_is_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("port: nope\n")
    code, calls = _run(monkeypatch, ["--config", str(config)])
    assert code == 2 and calls == {}
    assert "port" in capsys.readouterr().err


def test_memory_storage_refuses_several_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    code, calls = _run(monkeypatch, ["--workers", "2", "--storage", "memory://"])
    assert code == 2 and calls == {}


def test_bad_auth_section_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("auth:\n  rules: []\n")  # no htpasswd: refused before uvicorn starts
    code, calls = _run(monkeypatch, ["--config", str(config), "--storage", "memory://"])
    assert code == 2 and calls == {}
    err = capsys.readouterr().err
    assert "auth" in err and "htpasswd" in err and "Traceback" not in err


def test_uvicorn_never_reads_forwarded_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn believes the leftmost X-Forwarded-For entry (the client's own); the app's
    registry.client_address middleware reads them instead."""
    monkeypatch.delenv("PYREG_TRUSTED_PROXIES", raising=False)
    code, calls = _run(monkeypatch, ["--storage", "memory://"])
    assert code == 0 and calls["proxy_headers"] is False
    code, calls = _run(monkeypatch, ["--storage", "memory://", "--trusted-proxies", "10.0.0.7"])
    assert code == 0 and calls["proxy_headers"] is False
    assert "forwarded_allow_ips" not in calls


def test_trusted_proxies_star_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PYREG_TRUSTED_PROXIES", raising=False)
    code, calls = _run(monkeypatch, ["--storage", "memory://", "--trusted-proxies", "*"])
    assert code == 2 and calls == {}
    assert "trusted_proxies" in capsys.readouterr().err
