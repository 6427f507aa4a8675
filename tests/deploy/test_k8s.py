"""deploy/k8s against the Kubernetes API schemas (kubernetes-validate --strict, offline with its
bundled schemas) and the "restricted" Pod Security Standard, whose rules are written out here
(https://kubernetes.io/docs/concepts/security/pod-security-standards/, v1.30+), plus what an
operator relies on: disruption budget, spreading, kustomize image, realm, metrics scraping."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
APP = {"app.kubernetes.io/name": "pyreg"}


def _manifests() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _docs() -> list[dict[str, Any]]:
    return [d for p in _manifests() for d in yaml.safe_load_all(p.read_text()) if d]


def _one(kind: str) -> dict[str, Any]:
    (found,) = [d for d in _docs() if d["kind"] == kind]
    return found


def _pod_specs() -> dict[str, dict[str, Any]]:
    """Every pod template in the manifests, by the workload's kind."""
    out: dict[str, dict[str, Any]] = {}
    for doc in _docs():
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out[doc["kind"]] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            out[doc["kind"]] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return out


# -- kubernetes-validate ---------------------------------------------------------------------


def test_every_manifest_passes_kubernetes_validate_strict() -> None:
    binary = shutil.which("kubernetes-validate") or str(
        Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubernetes-validate"
    )
    if not Path(binary).exists():
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    done = subprocess.run(
        [binary, "--strict", "--no-warn", *map(str, _manifests())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for path in _manifests():
        assert f"{path} passed" in done.stdout or str(path) in done.stdout, done.stdout


def test_kubernetes_validate_strict_rejects_an_unknown_field(tmp_path: Path) -> None:
    """The check above can fail: a misspelt field is refused."""
    kv = pytest.importorskip("kubernetes_validate")
    bad = copy.deepcopy(_one("PodDisruptionBudget"))
    bad["spec"]["minAvailabel"] = 1
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, kv.latest_version(), strict=True)
    kv.validate(_one("PodDisruptionBudget"), kv.latest_version(), strict=True)


# -- the restricted Pod Security Standard ----------------------------------------------------

_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The rules of the baseline and restricted levels that apply to a pod spec."""
    problems: list[str] = []
    pod_sc = pod.get("securityContext", {})
    containers = [
        *pod.get("initContainers", []),
        *pod.get("containers", []),
        *pod.get("ephemeralContainers", []),
    ]
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"{flag} must be unset or false")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']}: type {sorted(kinds)} is not allowed")
    pod_seccomp = pod_sc.get("seccompProfile", {}).get("type")
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod runAsUser must not be 0")
    for c in containers:
        name = c["name"]
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser must not be 0")
        seccomp = sc.get("seccompProfile", {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: only NET_BIND_SERVICE may be added")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{name}: procMount")
    return problems


@pytest.mark.parametrize("kind", ["Deployment", "CronJob"])
def test_pods_meet_the_restricted_pod_security_standard(kind: str) -> None:
    assert restricted_violations(_pod_specs()[kind]) == []


@pytest.mark.parametrize(
    ("path", "value", "rule"),
    [
        (("containers", 0, "securityContext", "runAsNonRoot"), False, "runAsNonRoot"),
        (("securityContext", "seccompProfile"), {"type": "Unconfined"}, "seccompProfile"),
        (("containers", 0, "securityContext", "allowPrivilegeEscalation"), True, "Escalation"),
        (("containers", 0, "securityContext", "capabilities"), {"add": ["NET_ADMIN"]}, "ALL"),
        (("hostNetwork",), True, "hostNetwork"),
        (("volumes", 0), {"name": "h", "hostPath": {"path": "/"}}, "hostPath"),
    ],
)
def test_the_restricted_check_catches_each_violation(
    path: tuple[str | int, ...], value: object, rule: str
) -> None:
    pod = copy.deepcopy(_pod_specs()["Deployment"])
    target: Any = pod
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert any(rule in problem for problem in restricted_violations(pod))


@pytest.mark.parametrize("kind", ["Deployment", "CronJob"])
def test_root_filesystem_is_read_only_with_a_writable_tmp(kind: str) -> None:
    pod = _pod_specs()[kind]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for c in pod["containers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        (tmp,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert "emptyDir" in volumes[tmp["name"]]
    # The image's uid/gid (deploy/Dockerfile), so files on volumes are the registry's.
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001


@pytest.mark.parametrize("kind", ["Deployment", "CronJob"])
def test_every_container_has_resources(kind: str) -> None:
    for c in _pod_specs()[kind]["containers"]:
        assert {"cpu", "memory"} <= set(c["resources"]["requests"])
        assert "memory" in c["resources"]["limits"]


# -- availability ----------------------------------------------------------------------------


def test_disruption_budget_keeps_a_replica_of_the_deployment() -> None:
    pdb = _one("PodDisruptionBudget")
    deployment = _one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_replicas_spread_across_nodes() -> None:
    deployment = _one("Deployment")
    pod = deployment["spec"]["template"]
    constraints = pod["spec"]["topologySpreadConstraints"]
    (by_node,) = [c for c in constraints if c["topologyKey"] == "kubernetes.io/hostname"]
    assert by_node["whenUnsatisfiable"] == "DoNotSchedule" and by_node["maxSkew"] == 1
    assert by_node["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


# -- image, realm, metrics -------------------------------------------------------------------


def test_image_name_is_set_by_kustomize() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    names = {i["name"] for i in kustomization["images"]}
    for pod in _pod_specs().values():
        for c in pod["containers"]:
            assert c["image"] in names, f"{c['image']} is not rewritten by kustomize `images:`"
    for image in kustomization["images"]:
        assert image.get("newName") and (image.get("newTag") or image.get("digest"))


def test_token_realm_is_the_public_https_url_of_the_ingress() -> None:
    config = yaml.safe_load(_one("ConfigMap")["data"]["config.yaml"])
    realm = urlsplit(config["auth"]["realm"])
    ingress = _one("Ingress")["spec"]
    assert realm.scheme == "https"
    assert realm.hostname in {rule["host"] for rule in ingress["rules"]}
    assert realm.hostname in {h for tls in ingress["tls"] for h in tls["hosts"]}
    assert realm.path == config["auth"].get("token_path", "/token")


def test_metrics_are_scraped_from_the_metrics_listener_not_the_public_port() -> None:
    pod = _one("Deployment")["spec"]["template"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(annotations["prometheus.io/port"]) == ports["metrics"] != ports["http"]
    command = container["command"]
    addr = command[command.index("--metrics-addr") + 1]
    assert addr.rsplit(":", 1)[1] == annotations["prometheus.io/port"]
    # The Service (and so the Ingress) exposes only the public port.
    assert [p["targetPort"] for p in _one("Service")["spec"]["ports"]] == ["http"]


def test_the_namespace_enforces_the_restricted_level() -> None:
    labels = _one("Namespace")["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == _one("Namespace")["metadata"]["name"]
