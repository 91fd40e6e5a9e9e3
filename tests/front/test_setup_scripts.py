"""Client configuration generators: each output parses as what its client reads, and says the right thing."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from appliance.cli import setup as cli_setup
from appliance.config.model import Config, RegistryConfig, Scheme, docker_hub
from appliance.errors import ConfigError
from appliance.front.setup_scripts import (
    SetupKind,
    containerd_hosts,
    containerd_script,
    docker_daemon_json,
    podman_registries_conf,
    render_setup,
    systemd_script,
    valid_address,
)

ADDRESS = "cache.lan:3128"
LAB = RegistryConfig(host="lab.test:5000", scheme=Scheme.HTTP)
REGISTRIES = (docker_hub(), RegistryConfig(host="quay.io"), LAB)


def test_containerd_default_hosts_toml_sends_everything_to_the_appliance_first() -> None:
    files = {f.path: tomllib.loads(f.content) for f in containerd_hosts(ADDRESS, REGISTRIES)}
    default = files["_default/hosts.toml"]
    assert "server" not in default  # containerd falls back to the registry named in the image
    assert default["host"] == {"http://cache.lan:3128": {"capabilities": ["pull", "resolve"]}}


def test_containerd_per_registry_hosts_toml_names_the_real_upstream() -> None:
    files = {f.path: tomllib.loads(f.content) for f in containerd_hosts(ADDRESS, REGISTRIES)}
    assert set(files) == {
        "_default/hosts.toml",
        "docker.io/hosts.toml",
        "quay.io/hosts.toml",
        "lab.test:5000/hosts.toml",
    }
    assert files["docker.io/hosts.toml"]["server"] == "https://registry-1.docker.io"
    assert files["quay.io/hosts.toml"]["server"] == "https://quay.io"
    assert files["lab.test:5000/hosts.toml"]["server"] == "http://lab.test:5000"
    for content in files.values():
        assert content["host"]["http://cache.lan:3128"]["capabilities"] == ["pull", "resolve"]


def test_containerd_script_writes_exactly_the_hosts_files(tmp_path: Path) -> None:
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh on this machine")
    script = containerd_script(ADDRESS, REGISTRIES)
    done = subprocess.run(
        [sh, "-c", script],
        env={"CERTS_D": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for expected in containerd_hosts(ADDRESS, REGISTRIES):
        assert (tmp_path / expected.path).read_text() == expected.content
    assert "cache.lan:3128" in done.stdout


def test_docker_daemon_json_fragment_lists_the_appliance_as_mirror() -> None:
    assert json.loads(docker_daemon_json(ADDRESS)) == {"registry-mirrors": ["http://cache.lan:3128"]}


def test_podman_registries_conf_mirrors_every_registry_through_a_path_prefix() -> None:
    conf = tomllib.loads(podman_registries_conf(ADDRESS, REGISTRIES))
    by_prefix = {entry["prefix"]: entry for entry in conf["registry"]}
    assert set(by_prefix) == {"docker.io", "quay.io", "lab.test:5000"}
    assert by_prefix["docker.io"]["mirror"] == [{"location": "cache.lan:3128/docker.io", "insecure": True}]
    # A ':' is not allowed in a mirror location's path, so the port is spelled host_PORT.
    lab_mirror = {"location": "cache.lan:3128/lab.test_5000", "insecure": True}
    assert by_prefix["lab.test:5000"]["mirror"] == [lab_mirror]
    assert by_prefix["lab.test:5000"]["insecure"] is True  # the upstream itself is plain HTTP
    assert "insecure" not in by_prefix["quay.io"]
    assert all(entry["location"] == entry["prefix"] for entry in conf["registry"])


@pytest.mark.parametrize("address", ["a.b:1", "10.0.0.1:3128", "[fd00::1]:3128", "localhost"])
def test_valid_addresses(address: str) -> None:
    assert valid_address(address)


@pytest.mark.parametrize("address", ["", "a b:1", "x'; rm -rf /:1", 'h"]:1', "h:1/x", "h:123456"])
def test_addresses_that_could_break_a_script_or_toml_are_refused(address: str) -> None:
    assert not valid_address(address)
    with pytest.raises(ValueError):
        render_setup(SetupKind.PODMAN, address, REGISTRIES)


def test_render_setup_systemd_is_the_seed_script() -> None:
    document = render_setup(SetupKind.SYSTEMD, ADDRESS, REGISTRIES)
    assert document.text == systemd_script("http://cache.lan:3128")
    assert document.content_type == "text/x-shellscript"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance")
    cli_setup.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "appliance.toml"
    path.write_text(
        'listen = "10.1.2.3:5555"\n\n[[registries]]\nhost = "quay.io"\n\n'
        '[[registries]]\nhost = "lab.test:5000"\nscheme = "http"\n'
    )
    return path


def test_cli_prints_podman_config_for_the_configured_registries_at_the_listen_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args(["setup", "podman", "--config", str(_config_file(tmp_path))])
    assert args.handler(args) == 0
    conf = tomllib.loads(capsys.readouterr().out)
    # Docker Hub is always served, whatever the file lists.
    assert [entry["prefix"] for entry in conf["registry"]] == ["docker.io", "quay.io", "lab.test:5000"]
    assert conf["registry"][2]["mirror"][0]["location"] == "10.1.2.3:5555/lab.test_5000"


def test_cli_address_flag_wins_and_docker_warns_it_covers_docker_hub_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args(
        ["setup", "docker", "--config", str(_config_file(tmp_path)), "--address", "mirror.lan:80"]
    )
    assert args.handler(args) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"registry-mirrors": ["http://mirror.lan:80"]}
    assert "Docker Hub" in err


def test_cli_containerd_output_is_the_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["setup", "containerd", "--config", str(_config_file(tmp_path))])
    assert args.handler(args) == 0
    registries = (docker_hub(), RegistryConfig(host="quay.io"), LAB)
    assert capsys.readouterr().out == containerd_script("10.1.2.3:5555", registries)


def test_cli_refuses_a_bad_address(tmp_path: Path) -> None:
    args = _parser().parse_args(
        ["setup", "containerd", "--config", str(_config_file(tmp_path)), "--address", "a b"]
    )
    with pytest.raises(ConfigError):
        args.handler(args)


def test_default_address_replaces_a_wildcard_host_with_a_name() -> None:
    address = cli_setup.default_address(Config(listen_host="0.0.0.0", listen_port=3128))
    assert address.endswith(":3128")
    assert not address.startswith("0.0.0.0")
    assert valid_address(address)
    assert cli_setup.default_address(Config(listen_host="::1", listen_port=1)) == "[::1]:1"
