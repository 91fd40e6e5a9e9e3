"""The fleet's deployment files (issue 18 item 6) parse, and what they give each replica is a config
the real loader accepts as a fleet replica, checked without kubectl or Docker.

Kubernetes (deploy/kubernetes/fleet): a StatefulSet of 3 replicas whose pod name and pod IP become
the replica id and the advertise URL (downward API), a Service on 3128, a headless governing Service,
a Secret for the bucket keys and the fleet token, a ConfigMap holding config.toml, one CA for all.
Compose (docker-compose.fleet.yml): SeaweedFS and 3 replicas on one machine.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from appliance.config.load import load_config
from appliance.config.model import Config
from appliance.config.seed_env import ALL_VARS

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse the manifests (pip install pyyaml)")

from tests.deploy.manifests import documents, kubernetes_objects  # noqa: E402 (after the skip: it needs PyYAML)

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "deploy/kubernetes/fleet"
COMPOSE = ROOT / "docker-compose.fleet.yml"
# Variables the manifests set only to expand into others (Kubernetes' $(VAR) references).
POD_FIELDS = {"POD_NAME": "registry-appliance-1", "POD_IP": "10.42.0.17"}


def _statefulset() -> dict[str, Any]:
    return kubernetes_objects(FLEET)[("StatefulSet", "registry-appliance")]


def _container() -> dict[str, Any]:
    (container,) = _statefulset()["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of an env value from variables defined before it."""
    return re.sub(r"\$\(([A-Z_][A-Z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def _pod_environment() -> dict[str, str]:
    """The environment one pod's container gets: the Secret's variables, then ``env`` in order."""
    objects = kubernetes_objects(FLEET)
    env: dict[str, str] = {}
    for source in _container()["envFrom"]:
        secret = objects[("Secret", source["secretRef"]["name"])]
        env.update(secret["stringData"])
    for item in _container()["env"]:
        if "valueFrom" in item:
            field_path = item["valueFrom"]["fieldRef"]["fieldPath"]
            assert field_path in ("metadata.name", "status.podIP"), item
            env[item["name"]] = POD_FIELDS[item["name"]]
        else:
            env[item["name"]] = _expand(item["value"], env)
    return env


def _load(tmp_path: Path, config_toml: str | None, env: dict[str, str]) -> Config:
    """What ``appliance run`` reads from this file and environment (paths moved under tmp_path)."""
    path = None
    if config_toml is not None:
        path = tmp_path / "config.toml"
        path.write_text(config_toml)
    environ = {**env, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "none")}
    return load_config(environ=environ, config_path=path).config


def test_kustomization_lists_every_manifest_and_gives_all_replicas_one_ca() -> None:
    kustomization = documents(FLEET / "kustomization.yaml")[0]
    on_disk = {p.name for p in FLEET.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk
    (generator,) = kustomization["secretGenerator"]
    pod = _statefulset()["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in _container()["volumeMounts"]}
    env = _pod_environment()
    ca_mount = mounts[str(Path(env["CA_CRT_FILE"]).parent)]
    assert volumes[ca_mount["name"]]["secret"]["secretName"] == generator["name"]
    assert sorted(generator["files"]) == sorted(
        Path(env[name]).name for name in ("CA_CRT_FILE", "CA_KEY_FILE")
    )


def test_a_statefulset_runs_three_replicas_each_with_its_own_disk() -> None:
    spec = _statefulset()["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {mount["mountPath"]: mount for mount in _container()["volumeMounts"]}
    assert mounts["/docker_mirror_cache"]["name"] == claim["metadata"]["name"]
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert _container()["securityContext"]["readOnlyRootFilesystem"] is True
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert _container()[probe]["httpGet"] == {"path": "/", "port": "proxy"}, probe


def test_services_expose_3128_to_clients_and_govern_the_replicas_names() -> None:
    objects = kubernetes_objects(FLEET)
    statefulset = _statefulset()
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    service = objects[("Service", "registry-appliance")]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [
        {"name": "proxy", "port": 3128, "targetPort": "proxy", "protocol": "TCP"}
    ]
    peers = objects[("Service", statefulset["spec"]["serviceName"])]
    assert peers["spec"]["clusterIP"] == "None"
    assert peers["spec"]["selector"].items() <= labels.items()


def test_every_variable_the_pod_gets_is_one_the_engine_reads() -> None:
    unknown = set(_pod_environment()) - set(ALL_VARS) - set(POD_FIELDS)
    assert not unknown, f"variables the engine does not read: {sorted(unknown)}"


def test_the_config_map_and_the_pod_environment_make_a_fleet_replica_named_after_its_pod(
    tmp_path: Path,
) -> None:
    objects = kubernetes_objects(FLEET)
    mount = next(m for m in _container()["volumeMounts"] if m["mountPath"].endswith("config.toml"))
    assert mount["mountPath"] == "/etc/registry-appliance/config.toml"  # over the image's own file
    volume = next(
        v for v in _statefulset()["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    )
    text = objects[("ConfigMap", volume["configMap"]["name"])]["data"][mount["subPath"]]
    # The image's three keys are kept (deploy/container/config.toml).
    image_defaults = tomllib.loads((ROOT / "deploy/container/config.toml").read_text())
    assert image_defaults.items() <= tomllib.loads(text).items()
    secret = objects[("Secret", _container()["envFrom"][0]["secretRef"]["name"])]["stringData"]
    assert {"FLEET_ACCESS_KEY_ID", "FLEET_SECRET_ACCESS_KEY", "FLEET_TOKEN"} <= secret.keys()

    config = _load(tmp_path, text, _pod_environment())
    fleet = config.fleet
    assert fleet.enabled and fleet.store == "s3://registry-cache/fleet"
    assert fleet.replica_id == POD_FIELDS["POD_NAME"]
    assert fleet.advertise_url == f"http://{POD_FIELDS['POD_IP']}:3128"
    assert fleet.access_key_id == secret["FLEET_ACCESS_KEY_ID"]
    assert fleet.secret_access_key.reveal() == secret["FLEET_SECRET_ACCESS_KEY"]
    assert fleet.token.reveal() == secret["FLEET_TOKEN"]
    assert fleet.max_size == 500 * 1024**3 and fleet.lease_ttl == 30
    assert config.cache.max_size == 32 * 1024**3
    # The L1 cap fits the per-replica volume it lives on.
    (claim,) = _statefulset()["spec"]["volumeClaimTemplates"]
    storage = claim["spec"]["resources"]["requests"]["storage"]
    assert int(storage.removesuffix("Gi")) * 1024**3 > config.cache.max_size


# -- compose ----------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    document = documents(COMPOSE)[0]
    assert isinstance(document, dict)
    return document


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:?message}`` / ``${VAR:-default}``, with .env values a user would put there."""
    dotenv = {"FLEET_SECRET_ACCESS_KEY": "s3-secret-from-dotenv", "FLEET_TOKEN": "token-from-dotenv"}

    def one(match: re.Match[str]) -> str:
        name, operator, rest = match.group(1), match.group(2) or "", match.group(3) or ""
        if name in dotenv:
            return dotenv[name]
        assert operator == ":-", f"${{{name}}} has no default and is not in .env"
        return rest

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:[-?])([^}]*))?\}", one, value)


def _replicas() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in _compose()["services"].items() if name.startswith("replica-")}


def test_compose_runs_seaweedfs_and_three_replicas_each_on_its_own_port_and_disk() -> None:
    services = _compose()["services"]
    replicas = _replicas()
    assert len(replicas) == 3
    assert sorted(port for s in replicas.values() for port in s["ports"]) == [
        "3128:3128",
        "3129:3128",
        "3130:3128",
    ]
    disks = [v.split(":")[0] for s in replicas.values() for v in s["volumes"] if ":/docker_mirror_cache" in v]
    assert len(set(disks)) == 3
    weed = services["seaweedfs"]["command"]
    assert weed[0] == "mini"
    flags = dict(arg.lstrip("-").split("=", 1) for arg in weed[1:])
    # The bucket the replicas use is made at start, on the port they reach.
    for service in replicas.values():
        env = service["environment"]
        assert env["FLEET_STORE"].removeprefix("s3://").split("/")[0] == flags["bucket"]
        assert env["FLEET_ENDPOINT"] == f"http://seaweedfs:{flags['s3.port']}"


def test_compose_replicas_share_the_store_token_and_ca_and_each_advertises_its_own_service(
    tmp_path: Path,
) -> None:
    replicas = _replicas()
    ids = set()
    ca_sources = set()
    for name, service in replicas.items():
        env = {key: _interpolate(str(value)) for key, value in service["environment"].items()}
        unknown = set(env) - set(ALL_VARS)
        assert not unknown, f"{name}: variables the engine does not read: {sorted(unknown)}"
        fleet = _load(tmp_path / name, None, env).fleet
        assert fleet.enabled and fleet.store == "s3://registry-cache/fleet"
        assert fleet.advertise_url == f"http://{name}:3128"
        assert fleet.token.reveal() == "token-from-dotenv"
        assert fleet.secret_access_key.reveal() == "s3-secret-from-dotenv"
        ids.add(fleet.replica_id)
        volumes = dict(v.split(":", 1) for v in service["volumes"])
        if "CA_CRT_FILE" in env:
            # Its own ca_dir, and the first replica's CA mounted read-only.
            (source,) = [
                src
                for src, target in volumes.items()
                if target.startswith(str(Path(env["CA_CRT_FILE"]).parent))
            ]
            assert volumes[source].endswith(":ro")
            assert service["depends_on"]["replica-a"]["condition"] == "service_healthy"
        else:
            source = next(src for src, target in volumes.items() if target == "/ca")
        ca_sources.add(source)
    assert len(ids) == 3
    assert len(ca_sources) == 1, ca_sources  # one CA: clients trust it whichever replica answers


def test_compose_keeps_secrets_out_of_the_file() -> None:
    text = COMPOSE.read_text()
    for name in ("FLEET_SECRET_ACCESS_KEY", "FLEET_TOKEN"):
        assert re.search(rf'{name}: "\$\{{{name}:\?', text), name
    identities = _compose()["configs"]["s3-identities"]["content"]
    assert "${FLEET_SECRET_ACCESS_KEY}" in identities
