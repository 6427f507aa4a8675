from __future__ import annotations

from pathlib import Path

import pytest

from registry.settings import Settings, SettingsError, load_settings


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 5000)
    assert settings.storage_url == "file://./var/registry"
    assert settings.max_manifest_size == 4 * 1024 * 1024


def test_yaml_then_env_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "host: 0.0.0.0\nport: 6000\nworkers: 2\nlog_level: DEBUG\n"
        "storage: {url: 's3://b/p', options: {region: eu}}\n"
        "uploads: {ttl: 60, purge_interval: 5}\nmax_manifest_size: 1000\n"
        "auth: {realm: x}\n"
    )
    settings = load_settings(config, environ={"PYREG_PORT": "7000"}, workers=3, host=None)
    assert settings.host == "0.0.0.0"
    assert settings.port == 7000
    assert settings.workers == 3
    assert settings.log_level == "debug"
    assert settings.storage_url == "s3://b/p"
    assert settings.storage_options == {"region": "eu"}
    assert settings.upload_ttl == 60
    assert settings.upload_purge_interval == 5.0
    assert settings.max_manifest_size == 1000
    assert settings.auth == {"realm": "x"}


def test_storage_as_plain_url(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("storage: memory://\n")
    assert load_settings(config, environ={}).storage_url == "memory://"


@pytest.mark.parametrize(
    "text",
    [
        "port: abc\n",
        "nonsense: 1\n",
        "- a list\n",
        "port: 70000\n",
        "log_level: loud\n",
        "storage: 5\n",
        "{{{",
    ],
)
def test_bad_files_are_settings_errors(tmp_path: Path, text: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(SettingsError):
        load_settings(config, environ={})


def test_missing_file_and_bad_env(tmp_path: Path) -> None:
    with pytest.raises(SettingsError):
        load_settings(tmp_path / "missing.yaml", environ={})
    with pytest.raises(SettingsError):
        load_settings(environ={"PYREG_PORT": "many"})


def test_json_round_trip() -> None:
    settings = Settings(port=1234, storage_options={"a": 1}, auth={"b": [1]})
    assert Settings.from_json(settings.to_json()) == settings


def test_trusted_proxies_as_list_string_or_env(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("trusted_proxies: [10.0.0.1, 10.0.0.2]\n")
    assert load_settings(config, environ={}).trusted_proxies == "10.0.0.1,10.0.0.2"
    config.write_text("trusted_proxies: 10.0.0.0/8, fd00::/8\n")
    assert load_settings(config, environ={}).trusted_proxies == "10.0.0.0/8, fd00::/8"
    env = {"PYREG_TRUSTED_PROXIES": "127.0.0.1"}
    assert load_settings(config, environ=env).trusted_proxies == "127.0.0.1"
    assert load_settings(None, environ={}).trusted_proxies == ""
    config.write_text("trusted_proxies: 5\n")
    with pytest.raises(SettingsError):
        load_settings(config, environ={})


@pytest.mark.parametrize("value", ["'*'", "10.0.0.1,*", "proxy.example", "10.0.0.0/33"])
def test_trusted_proxies_refuses_star_and_non_addresses(tmp_path: Path, value: str) -> None:
    """`*` made every peer a trusted proxy: any client chose its own address (and so the
    address its failed logins counted against)."""
    config = tmp_path / "c.yaml"
    config.write_text(f"trusted_proxies: {value}\n")
    with pytest.raises(SettingsError, match="trusted_proxies"):
        load_settings(config, environ={})


def test_log_format_and_metrics(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("log_format: JSON\nmetrics: {addr: '127.0.0.1:9101', on_main_port: true}\n")
    settings = load_settings(config, environ={})
    assert settings.log_format == "json"
    assert settings.metrics_addr == "127.0.0.1:9101" and settings.metrics_on_main_port
    env = {"PYREG_LOG_FORMAT": "text", "PYREG_METRICS_ADDR": ":9102"}
    from_env = load_settings(config, environ=env)
    assert (from_env.log_format, from_env.metrics_addr) == ("text", ":9102")
    assert load_settings(config, environ=env, metrics_addr="[::1]:9").metrics_addr == "[::1]:9"
    assert Settings.from_json(settings.to_json()) == settings
    assert (Settings().log_format, Settings().metrics_addr) == ("text", "")


@pytest.mark.parametrize(
    "text",
    [
        "log_format: xml\n",
        "metrics: 9100\n",
        "metrics: {port: 9100}\n",
        "metrics: {on_main_port: 'yes'}\n",
    ],
)
def test_bad_observability_settings(tmp_path: Path, text: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(SettingsError):
        load_settings(config, environ={})
