"""The seed README's GCR example, exactly: custom delimiters and a multi-line JSON service-account key.

    docker run ... \\
       -e REGISTRIES="k8s.gcr.io gcr.io quay.io your.own.registry another.public.registry" \\
       -e AUTH_REGISTRIES_DELIMITER=";;;" -e AUTH_REGISTRY_DELIMITER=":::" \\
       -e AUTH_REGISTRIES="gcr.io:::_json_key:::$(cat servicekey.json);;;auth.docker.io:::\\
    dockerhub_username:::dockerhub_password"

The appliance runs as a subprocess with that environment and nothing else of the caller's: only
HOME/XDG paths (the image sets the same through its config) and LISTEN (the port mapping) are added.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.process import free_port, log_tail

ROOT = Path(__file__).resolve().parents[2]
SEED_REGISTRIES = "k8s.gcr.io gcr.io quay.io your.own.registry another.public.registry"
# A made-up key shaped like a real one: newlines, colons, quotes, and `\n` escapes inside the PEM.
SERVICE_KEY = {
    "type": "service_account",
    "project_id": "demo-project",
    "private_key_id": "0123456789abcdef0123456789abcdef01234567",
    "private_key": (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0:BAQEFAASC\n-----END PRIVATE KEY-----\n"
    ),
    "client_email": "puller@demo-project.iam.gserviceaccount.com",
    "client_id": "123456789012345678901",
    "token_uri": "https://oauth2.googleapis.com/token",
}
DOCKERHUB_PASSWORD = "dockerhub_password"


def _service_key_text() -> str:
    # What `$(cat servicekey.json)` yields: the pretty-printed file minus its final newline.
    return json.dumps(SERVICE_KEY, indent=2) + "\n"


def seed_gcr_env(home: Path) -> dict[str, str]:
    key = _service_key_text().rstrip("\n")
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "PYTHONUNBUFFERED": "1",
        "REGISTRIES": SEED_REGISTRIES,
        "AUTH_REGISTRIES_DELIMITER": ";;;",
        "AUTH_REGISTRY_DELIMITER": ":::",
        "AUTH_REGISTRIES": f"gcr.io:::_json_key:::{key};;;auth.docker.io:::dockerhub_username:::"
        + DOCKERHUB_PASSWORD,
    }


def appliance(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _secret_fragments() -> list[str]:
    return [DOCKERHUB_PASSWORD, SERVICE_KEY["private_key_id"], "MIIEvQIBADANBgkqhkiG9w0", "puller@demo"]


def test_config_check_lists_every_seed_registry_and_both_credentials_without_secrets(tmp_path: Path) -> None:
    result = appliance("config", "check", env=seed_gcr_env(tmp_path))

    assert result.returncode == 0, result.stderr
    out = result.stdout
    registries = out.split("registries (", 1)[1].split("credentials (", 1)[0]
    listed = [line.split()[0] for line in registries.splitlines()[1:] if line.startswith("  ")]
    assert listed == ["registry-1.docker.io", *SEED_REGISTRIES.split()]
    assert "gcr.io: user '_json_key', password ********" in out
    assert "auth.docker.io: user 'dockerhub_username', password ********" in out
    assert "credentials (2):" in out
    for fragment in _secret_fragments():
        assert fragment not in out + result.stderr


def test_export_env_gives_back_the_json_key_byte_for_byte(tmp_path: Path) -> None:
    # The masked summary cannot show the password; the seed-format export must, so it proves the
    # whole multi-line key survived the ;;; and ::: splitting, its own colons included.
    result = appliance("config", "export-env", "--format", "shell", env=seed_gcr_env(tmp_path))

    assert result.returncode == 0, result.stderr
    pairs = dict(word.split("=", 1) for word in shlex.split(result.stdout, comments=True))
    entries_delimiter = pairs.get("AUTH_REGISTRIES_DELIMITER", " ")
    entry_delimiter = pairs.get("AUTH_REGISTRY_DELIMITER", ":")
    entries = {}
    for entry in pairs["AUTH_REGISTRIES"].split(entries_delimiter):
        host, user, password = entry.split(entry_delimiter, 2)
        entries[host] = (user, password)
    assert entries["gcr.io"] == ("_json_key", _service_key_text().rstrip("\n"))
    assert json.loads(entries["gcr.io"][1]) == SERVICE_KEY
    assert entries["auth.docker.io"] == ("dockerhub_username", DOCKERHUB_PASSWORD)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {**seed_gcr_env(tmp_path), "LISTEN": f"127.0.0.1:{port}"}
    log_path = tmp_path / "appliance.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "appliance", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield f"http://127.0.0.1:{port}", log_path, process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _get(url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as answer:
        return answer.status, answer.read()


def test_engine_started_with_the_gcr_example_answers_health_and_ca_and_logs_no_secret(
    running: tuple[str, Path, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    url, log_path, process = running
    deadline = time.monotonic() + 30
    health: tuple[int, bytes] | None = None
    while health is None and time.monotonic() < deadline:
        assert process.poll() is None, f"appliance exited {process.returncode}:\n{log_tail(log_path)}"
        try:
            health = _get(url + "/")
        except OSError:
            time.sleep(0.1)
    assert health is not None, f"no answer on {url}:\n{log_tail(log_path)}"

    status, body = health
    assert status == 200
    assert isinstance(json.loads(body), dict)
    status, ca = _get(url + "/ca.crt")
    assert status == 200
    assert ca.startswith(b"-----BEGIN CERTIFICATE-----")
    assert ca == (tmp_path / "data/registry-appliance/ca/ca.crt").read_bytes()

    process.terminate()
    assert process.wait(10) == 0
    log = log_path.read_text(errors="replace")
    for fragment in _secret_fragments():
        assert fragment not in log
