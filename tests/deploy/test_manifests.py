"""Static checks of deploy/: no Docker engine or cluster runs here, so every file is parsed
and checked for what an operator relies on (probes, replicas, shared secrets, CLI flags)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"


def _yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


def _k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":  # kustomize's own file, not an API object
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _storage_url(config: dict[str, Any]) -> str:
    storage = config["storage"]
    return str(storage["url"] if isinstance(storage, dict) else storage)


def _one(kind: str) -> dict[str, Any]:
    found = [d for d in _k8s_docs() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = pod_spec["containers"]
    return containers


def _dockerfile_instructions() -> Iterator[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            yield keyword.upper(), rest.strip()


def _serve_parser_accepts(argv: list[str]) -> None:
    """Parse `argv` (after `pyreg`) with the real CLI parser; fail on unknown flags."""
    cli = pytest.importorskip("pyreg.cli")
    parser = cli.build_parser()
    if argv[0] not in parser._subparsers._group_actions[0].choices:  # type: ignore[union-attr]
        pytest.skip(f"`pyreg {argv[0]}` is not registered in the CLI yet")
    try:
        parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on an unknown flag or a bad value
        pytest.fail(f"`pyreg {' '.join(argv)}` is rejected by the CLI parser (exit {exc.code})")


def test_every_yaml_file_parses() -> None:
    files = _yaml_files()
    assert len(files) >= 8
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path} is empty"
        assert all(isinstance(d, dict) for d in docs), path


def test_k8s_objects_have_identity() -> None:
    for doc in _k8s_docs():
        assert doc.get("apiVersion"), doc
        assert doc.get("kind"), doc
        assert doc.get("metadata", {}).get("name"), doc


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_deployment_runs_two_probed_nonroot_replicas() -> None:
    deployment = _one("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    (container,) = _containers(pod["spec"])
    # httpGet on the unauthenticated endpoints: no Python started per probe, and no 401.
    expected = {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
        "startupProbe": "/healthz",
    }
    for probe, path in expected.items():
        assert "exec" not in container[probe], f"{probe}: no exec probes"
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == 5000
    assert container["command"][:2] == ["pyreg", "serve"]


def test_deployment_uses_s3_storage_from_the_configmap() -> None:
    config = yaml.safe_load(_one("ConfigMap")["data"]["config.yaml"])
    assert _storage_url(config).startswith("s3://")
    deployment = _one("Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == _one("ConfigMap")["metadata"]["name"]


def test_every_secret_reference_exists() -> None:
    secret = _one("Secret")
    keys = set(secret["stringData"])
    name = secret["metadata"]["name"]
    text = json.dumps([_one("Deployment"), _one("CronJob")])
    refs = re.findall(r'"secretKeyRef": \{"name": "([^"]+)", "key": "([^"]+)"\}', text)
    assert refs, "the workloads take their secrets from the Secret"
    for ref_name, key in refs:
        assert ref_name == name
        assert key in keys, f"secret key {key!r} is not in the Secret"
    for must in ("htpasswd", "token.key", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert must in keys


def test_service_selects_the_deployment_pods() -> None:
    service = _one("Service")
    labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"


def test_ingress_allows_large_slow_uploads() -> None:
    annotations = _one("Ingress")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600


def test_gc_cronjob_runs_pyreg_gc_once_at_a_time() -> None:
    cronjob = _one("CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = _containers(pod)
    assert container["command"][:2] == ["pyreg", "gc"]
    _serve_parser_accepts(container["command"][1:])


def test_k8s_command_is_accepted_by_the_cli() -> None:
    (container,) = _containers(_one("Deployment")["spec"]["template"]["spec"])
    _serve_parser_accepts(container["command"][1:])


def test_dockerfile_shape() -> None:
    instructions = list(_dockerfile_instructions())
    (user,) = [rest for kw, rest in instructions if kw == "USER"]
    assert not user.startswith(("root", "0")), "the image must not run as root"
    assert "/var/lib/pyreg" in [rest for kw, rest in instructions if kw == "VOLUME"]
    assert any(kw == "RUN" and "pip install" in rest for kw, rest in instructions)


def test_dockerfile_healthcheck_runs_the_copied_script_with_the_config() -> None:
    instructions = list(_dockerfile_instructions())
    (healthcheck,) = [rest for kw, rest in instructions if kw == "HEALTHCHECK"]
    argv = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    copies: dict[str, str] = {}  # destination -> source, for `COPY SOURCE DEST`
    for kw, rest in instructions:
        if kw == "COPY" and not rest.startswith("--") and len(rest.split()) == 2:
            source, dest = rest.split()
            copies[dest] = source
    assert argv[0] == "python" and copies[argv[1]] == "deploy/healthcheck.py"
    assert argv[2] == _dockerfile_cmd()[_dockerfile_cmd().index("--config") + 1]


def _dockerfile_cmd() -> list[str]:
    (cmd,) = [rest for kw, rest in _dockerfile_instructions() if kw == "CMD"]
    argv: list[str] = json.loads(cmd)  # exec form: no shell, signals reach pyreg
    return argv


def test_dockerfile_cmd_serves_on_all_interfaces_with_a_config() -> None:
    argv = _dockerfile_cmd()
    assert argv[:2] == ["pyreg", "serve"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert argv[argv.index("--config") + 1] == "/etc/pyreg/config.yaml"


def test_dockerfile_cmd_is_accepted_by_the_cli() -> None:
    _serve_parser_accepts(_dockerfile_cmd()[1:])


def test_compose_single_and_ha_profiles() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert "profiles" not in services["registry"], "the single registry is the default"
    ha = {name for name, s in services.items() if "ha" in s.get("profiles", [])}
    assert {"registry-a", "registry-b", "minio", "lb"} <= ha
    # The replicas share one config, hence one storage, where upload sessions live.
    assert services["registry-a"]["volumes"] == services["registry-b"]["volumes"]
    assert services["registry-a"]["environment"] == services["registry-b"]["environment"]
    (mount,) = services["registry-a"]["volumes"]
    config = yaml.safe_load((DEPLOY / mount.split(":")[0]).read_text())
    assert _storage_url(config).startswith("s3://")
    assert config["storage"]["options"]["endpoint_url"] == "http://minio:9000"
    assert "minio" in services and "minio-init" in services["registry-a"]["depends_on"]
    for name in ("registry", "registry-a"):
        _serve_parser_accepts(services[name]["command"][1:])


def test_compose_registries_are_health_checked_on_healthz() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    for name in ("registry", "registry-a", "registry-b"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1:3] == ["python", "/usr/local/lib/pyreg/healthcheck.py"]
        # The config the check reads is the one the service mounts and serves with.
        (mount,) = [
            v for v in services[name]["volumes"] if v.endswith(":/etc/pyreg/config.yaml:ro")
        ]
        assert test[3] == "/etc/pyreg/config.yaml"
        command = services[name]["command"]
        config = yaml.safe_load((DEPLOY / mount.split(":")[0]).read_text())
        assert str(config["port"]) == command[command.index("--port") + 1]
    # The load balancer waits for healthy replicas, which needs their healthcheck.
    assert services["lb"]["depends_on"]["registry-a"]["condition"] == "service_healthy"


def test_load_balancer_is_not_sticky_and_has_no_body_limit() -> None:
    text = (DEPLOY / "compose" / "nginx.conf").read_text()
    conf = "\n".join(line.split("#")[0] for line in text.splitlines())  # directives only
    assert not re.search(r"\b(ip_hash|hash|sticky)\b", conf), "no session affinity"
    assert re.search(r"client_max_body_size\s+0;", conf)
    assert re.search(r"proxy_request_buffering\s+off;", conf)
    assert "registry-a:5000" in conf and "registry-b:5000" in conf


def _load_with_registry_settings(path: Path) -> object:
    settings = pytest.importorskip(
        "registry.settings", reason="registry/settings.py has not landed yet"
    )
    # An empty environment: the operator's PYREG_* variables must not mask a bad file.
    return settings.load_settings(path, environ={})


@pytest.mark.parametrize(
    "path",
    [
        DEPLOY / "config.example.yaml",
        DEPLOY / "compose" / "config.single.yaml",
        DEPLOY / "compose" / "config.s3.yaml",
    ],
    ids=lambda p: p.name,
)
def test_configs_load_with_the_registry_settings(path: Path) -> None:
    loaded = _load_with_registry_settings(path)
    raw = yaml.safe_load(path.read_text())
    assert getattr(loaded, "storage_url", None) == _storage_url(raw)


def test_configmap_config_loads_with_the_registry_settings(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(_one("ConfigMap")["data"]["config.yaml"])
    loaded = _load_with_registry_settings(path)
    assert getattr(loaded, "storage_url", "").startswith("s3://")
    # Files named by the config come from the mounted Secret, never from the ConfigMap.
    auth = getattr(loaded, "auth", None) or {}
    mounts = {
        m["name"]: m["mountPath"]
        for m in _containers(_one("Deployment")["spec"]["template"]["spec"])[0]["volumeMounts"]
    }
    for key in ("htpasswd", "key"):
        assert str(auth[key]).startswith(mounts["secret"] + "/")
    # The auth section is checked by the registry's own parser (rules, keys, types).
    auth_config = pytest.importorskip("registry.auth.config")
    parsed = auth_config.parse_config(auth)
    assert len(parsed.rules) == 2


def test_dockerfile_copies_every_package_the_wheel_needs() -> None:
    """A new top-level package left out of the Dockerfile's COPY lines builds a broken image."""
    import tomllib

    root = DEPLOY.parent
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in patterns}
    copied = set()
    for keyword, rest in _dockerfile_instructions():
        if keyword == "COPY" and not rest.startswith("--from"):
            copied.update(rest.split()[:-1])
    if "." in copied:  # the whole context: what the allowlist (the .dockerignore) lets through
        ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        copied |= {line[1:] for line in ignore if line.startswith("!")}
        copied.discard(".")
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
    for source in copied:
        assert (root / source).exists(), f"COPY source {source} does not exist"
    assert (root / "deploy" / "config.example.yaml").is_file()


def _documented_keys() -> set[str]:
    """Every `key:` in config.example.yaml, commented out or not."""
    text = (DEPLOY / "config.example.yaml").read_text()
    return set(re.findall(r"^[#\s]*([a-z_]+):", text, re.MULTILINE))


# Settings fields that live under a YAML section: field -> (section, key)
NESTED = {
    "tls_certificate": ("tls", "certificate"),
    "tls_key": ("tls", "key"),
    "tls_client_ca": ("tls", "client_ca"),
    "max_header_size": ("http", "max_header_size"),
    "max_url_size": ("http", "max_url_size"),
    "header_timeout": ("http", "header_timeout"),
    "keep_alive_timeout": ("http", "keep_alive"),
    "metrics_addr": ("metrics", "addr"),
    "metrics_on_main_port": ("metrics", "on_main_port"),
}


def test_config_example_documents_every_setting() -> None:
    settings = pytest.importorskip("registry.settings")
    import dataclasses

    documented = _documented_keys()
    for field in dataclasses.fields(settings.Settings):
        # storage_url/storage_options are the `storage` key; upload_* live under `uploads:`
        key = field.name
        if key.startswith("storage_"):
            key = "storage"
        elif key.startswith("upload_"):
            assert "uploads" in documented
            key = key.removeprefix("upload_")
        elif key.startswith("redis_"):
            assert "redis" in documented
            key = key.removeprefix("redis_")
        elif key in NESTED:
            section, key = NESTED[key]
            assert section in documented, f"setting {field.name}: no `{section}:` section"
        assert key in documented, f"setting {field.name} is not in config.example.yaml"


def test_config_example_documents_every_auth_and_s3_option() -> None:
    auth_config = pytest.importorskip("registry.auth.config")
    import dataclasses
    import inspect as inspect_

    documented = _documented_keys()
    auth_keys = {f.name for f in dataclasses.fields(auth_config.AuthConfig)}
    auth_keys |= {f.name for f in dataclasses.fields(auth_config.LockoutConfig)}
    assert auth_keys <= documented, sorted(auth_keys - documented)
    s3 = pytest.importorskip("storage_backends.s3")
    options = set(inspect_.signature(s3.S3Backend.__init__).parameters) - {"self", "bucket"}
    options.discard("prefix")  # part of the URL: s3://BUCKET/PREFIX
    assert options <= documented, sorted(options - documented)
