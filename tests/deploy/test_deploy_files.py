"""Deployment files parse and carry what issue 8 asks for, checked without kubectl or Docker.

Kubernetes: a Deployment with probes on `/`, a PVC for the cache, Secrets for the CA and the
credentials, a Service, and containerd hosts.toml files for mirror mode.  Compose: the seed's port,
volumes and variables.  systemd: a hardened unit (checked by systemd-analyze where installed).
Dockerfile: the drop-in contract (port, volumes, healthcheck, entrypoint, non-root engine).
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse the manifests (pip install pyyaml)")

from tests.deploy.manifests import documents, kubernetes_objects  # noqa: E402 (after the skip: it needs PyYAML)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/kubernetes"
SYSTEMD_UNIT = ROOT / "deploy/systemd/registry-appliance.service"
APPLIANCE_UID = 10001


def _container() -> dict[str, Any]:
    deployment = kubernetes_objects(K8S)[("Deployment", "registry-appliance")]
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def test_kustomization_lists_every_manifest_and_builds_the_ca_secret_from_files() -> None:
    kustomization = documents(K8S / "kustomization.yaml")[0]
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk
    (generator,) = kustomization["secretGenerator"]
    assert generator["name"] == "registry-appliance-ca"
    assert sorted(generator["files"]) == ["ca.crt", "ca.key"]


def test_deployment_probes_root_on_the_proxy_port_and_runs_one_non_root_replica() -> None:
    deployment = kubernetes_objects(K8S)[("Deployment", "registry-appliance")]
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"  # a ReadWriteOnce cache: never two pods on it
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == APPLIANCE_UID
    assert pod["securityContext"]["fsGroup"] == APPLIANCE_UID
    container = _container()
    assert container["ports"] == [{"name": "proxy", "containerPort": 3128, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/", "port": "proxy"}, probe
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_deployment_mounts_the_pvc_on_the_seed_volumes_and_the_ca_secret_read_only() -> None:
    objects = kubernetes_objects(K8S)
    pod = objects[("Deployment", "registry-appliance")]["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in _container()["volumeMounts"]}

    claim = volumes[mounts["/docker_mirror_cache"]["name"]]["persistentVolumeClaim"]["claimName"]
    pvc = objects[("PersistentVolumeClaim", claim)]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert re.fullmatch(r"\d+[GT]i", pvc["spec"]["resources"]["requests"]["storage"])
    assert volumes[mounts["/ca"]["name"]]["persistentVolumeClaim"]["claimName"] == claim

    env = {item["name"]: item["value"] for item in _container()["env"]}
    ca_mount = mounts[str(Path(env["CA_CRT_FILE"]).parent)]
    assert ca_mount["readOnly"] is True
    assert volumes[ca_mount["name"]]["secret"]["secretName"] == "registry-appliance-ca"
    assert Path(env["CA_KEY_FILE"]).parent == Path(env["CA_CRT_FILE"]).parent
    # The control socket's directory must be writable under readOnlyRootFilesystem.
    assert "emptyDir" in volumes[mounts["/var/lib/registry-appliance"]["name"]]


def test_credentials_come_from_a_secret_in_the_seed_format_with_json_safe_delimiters() -> None:
    objects = kubernetes_objects(K8S)
    sources = _container()["envFrom"]
    secret_name = next(s["secretRef"]["name"] for s in sources if "secretRef" in s)
    secret = objects[("Secret", secret_name)]
    data = secret["stringData"]
    assert set(data) == {"AUTH_REGISTRIES", "AUTH_REGISTRIES_DELIMITER", "AUTH_REGISTRY_DELIMITER"}
    assert data["AUTH_REGISTRIES_DELIMITER"] == ";;;" and data["AUTH_REGISTRY_DELIMITER"] == ":::"
    host, user, _ = data["AUTH_REGISTRIES"].split(":::")
    assert (host, user) == ("auth.docker.io", "dockerhub_username")
    config_name = next(s["configMapRef"]["name"] for s in sources if "configMapRef" in s)
    assert "REGISTRIES" in objects[("ConfigMap", config_name)]["data"]


def test_service_exposes_3128_to_the_deployment_pods() -> None:
    objects = kubernetes_objects(K8S)
    service = objects[("Service", "registry-appliance")]
    pod_labels = objects[("Deployment", "registry-appliance")]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "proxy", "port": 3128, "targetPort": "proxy", "protocol": "TCP"}
    ]


def test_containerd_hosts_files_mirror_each_registry_through_the_appliance_for_pull_and_resolve() -> None:
    files = kubernetes_objects(K8S)[("ConfigMap", "containerd-hosts")]["data"]
    registries = {key.removesuffix("_hosts.toml"): tomllib.loads(text) for key, text in files.items()}
    assert {"docker.io", "registry.k8s.io", "gcr.io", "quay.io", "ghcr.io"} <= registries.keys()
    assert registries["docker.io"]["server"] == "https://registry-1.docker.io"
    assert "server" not in registries["_default"]  # containerd falls back to the registry itself
    for name, hosts in registries.items():
        if name not in ("docker.io", "_default"):
            assert hosts["server"] == f"https://{name}"
        assert hosts["host"] == {"http://APPLIANCE:3128": {"capabilities": ["pull", "resolve"]}}, name


def test_compose_keeps_the_seed_port_volumes_and_variables() -> None:
    compose = documents(ROOT / "docker-compose.yml")[0]
    service = compose["services"]["registry-appliance"]
    assert service["ports"] == ["3128:3128"]
    targets = {volume.split(":")[1] for volume in service["volumes"]}
    assert targets == {"/docker_mirror_cache", "/ca"}
    assert {"REGISTRIES", "AUTH_REGISTRIES", "CACHE_MAX_SIZE"} <= service["environment"].keys()
    assert "password" not in str(service["environment"]).lower().replace("dockerhub_", "")


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_is_multi_stage_and_keeps_the_seed_contract() -> None:
    instructions = _dockerfile_instructions()
    froms = [args for op, args in instructions if op == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    ops = {op: args for op, args in final}
    assert ops["EXPOSE"] == "3128"
    assert ops["VOLUME"] == '["/docker_mirror_cache", "/ca"]'
    assert ops["ENTRYPOINT"] == '["appliance-entrypoint", "appliance", "run"]'
    assert "appliance-healthcheck" in ops["HEALTHCHECK"]
    final_text = " ".join(f"{op} {args}" for op, args in final)
    assert "COPY --from=build /opt/appliance /opt/appliance" in final_text
    for tool in ("gcc", "build-essential", "apt-get install", "pip install"):
        assert tool not in final_text, tool
    config = tomllib.loads((ROOT / "deploy/container/config.toml").read_text())
    assert config == {
        "cache_dir": "/docker_mirror_cache",
        "ca_dir": "/ca",
        "control_socket": "/var/lib/registry-appliance/control.sock",
    }


def test_dockerignore_sends_only_what_the_dockerfile_copies() -> None:
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert rules[0] == "*"
    copied = {
        args.split()[0] for op, args in _dockerfile_instructions() if op == "COPY" and "--from" not in args
    }
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for source in copied:
        assert any(source == a or source.startswith(a + "/") for a in allowed), source


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(SYSTEMD_UNIT.read_text())
    return parser


def test_systemd_unit_is_sandboxed_and_keeps_state_cache_and_socket_in_its_own_directories() -> None:
    service = _unit()["Service"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "DynamicUser": "yes",
        "StateDirectory": "registry-appliance",
        "CacheDirectory": "registry-appliance",
        "RuntimeDirectory": "registry-appliance",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == value, key
    exec_start = [word for word in service["ExecStart"].split() if word != "\\"]
    assert exec_start[1:2] == ["run"]
    flags = dict(zip(exec_start[2::2], exec_start[3::2], strict=True))
    assert flags["--cache-dir"] == "/var/cache/registry-appliance"
    assert flags["--ca-dir"] == "/var/lib/registry-appliance/ca"
    assert flags["--control-socket"] == "/run/registry-appliance/control.sock"
    assert service["EnvironmentFile"] == "-/etc/registry-appliance/appliance.env"


@pytest.fixture
def verifiable_unit(tmp_path: Path) -> Path:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    appliance = ROOT / ".venv/bin/appliance"
    if not appliance.exists():
        pytest.skip("no .venv/bin/appliance to stand in for /opt/registry-appliance/bin/appliance")
    unit = tmp_path / SYSTEMD_UNIT.name
    unit.write_text(SYSTEMD_UNIT.read_text().replace("/opt/registry-appliance/bin/appliance", str(appliance)))
    return unit


def test_systemd_analyze_accepts_the_unit_and_rates_its_exposure_low(verifiable_unit: Path) -> None:
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(verifiable_unit)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == ""
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(verifiable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
    assert match, security.stdout[-2000:] + security.stderr
    assert float(match.group(1)) <= 2.0
