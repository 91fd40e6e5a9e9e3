"""The real `appliance` command in a subprocess: conversions, checks, and one-line bad-input errors."""

from __future__ import annotations

import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

APPLIANCE = Path(sys.executable).parent / "appliance"
KEY_JSON = """{
  "type": "service_account",
  "project_id": "demo",
  "private_key_id": "abc123",
  "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkq: hk iG9w0\\n-----END PRIVATE KEY-----\\n",
  "client_email": "puller@demo.iam.gserviceaccount.com"
}"""


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    return subprocess.run(
        [str(APPLIANCE), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_bad_input(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("appliance: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_gcr_json_key_and_docker_hub_round_trip_byte_for_byte(tmp_path: Path) -> None:
    auth = f"gcr.io:::_json_key:::{KEY_JSON};;;auth.docker.io:::user:::pa:ss word"
    env = {"AUTH_REGISTRIES_DELIMITER": ";;;", "AUTH_REGISTRY_DELIMITER": ":::", "AUTH_REGISTRIES": auth}
    imported = run(tmp_path, "config", "import-env", "-o", str(tmp_path / "c.toml"), env=env)
    assert imported.returncode == 0, imported.stderr
    assert stat.S_IMODE((tmp_path / "c.toml").stat().st_mode) == 0o600
    exported = run(tmp_path, "config", "export-env", "--config", str(tmp_path / "c.toml"))
    assert exported.returncode == 0, exported.stderr
    values = dict(item.split("=", 1) for item in shlex.split(exported.stdout))
    assert values["AUTH_REGISTRIES_DELIMITER"] == ";;;"
    assert values["AUTH_REGISTRY_DELIMITER"] == ":::"
    assert values["AUTH_REGISTRIES"] == auth


def test_import_env_to_stdout_is_commented_toml(tmp_path: Path) -> None:
    result = run(tmp_path, "config", "import-env", env={"REGISTRIES": "quay.io", "CACHE_MAX_SIZE": "10g"})
    assert result.returncode == 0
    assert 'max_size = "10g"' in result.stdout and 'host = "quay.io"' in result.stdout
    assert "# CACHE_MAX_SIZE" in result.stdout


def test_import_env_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("# mine\n")
    assert_bad_input(run(tmp_path, "config", "import-env", "-o", str(tmp_path / "c.toml")), "file exists")
    assert (tmp_path / "c.toml").read_text() == "# mine\n"


def test_check_prints_a_summary_with_secrets_masked(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "config",
        "check",
        env={
            "AUTH_REGISTRIES": "quay.io:robot:TOPSECRET",
            "UPSTREAM_PROXY": "http://me:PROXYPASS@proxy:3128",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "quay.io: user 'robot', password ********" in result.stdout
    assert "http://me:********@proxy:3128" in result.stdout
    assert "TOPSECRET" not in result.stdout + result.stderr
    assert "PROXYPASS" not in result.stdout + result.stderr


def test_warnings_go_to_stderr(tmp_path: Path) -> None:
    result = run(tmp_path, "config", "check", env={"REGISTRIES": "quay.io quay.io auth.docker.io"})
    assert result.returncode == 0
    assert "appliance: warning: REGISTRIES: duplicate registry 'quay.io' merged" in result.stderr
    assert "auth.docker.io" in result.stderr


def test_toml_syntax_error(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('listen = "0.0.0.0:3128"\n[cache\n')
    assert_bad_input(
        run(tmp_path, "config", "check", "--config", str(tmp_path / "c.toml")),
        f"{tmp_path / 'c.toml'}:2:",
        "TOML syntax error",
    )


def test_unknown_key_suggests_the_nearest(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("[[registries]]\nhost = 'a.io'\nisecure = true\n")
    assert_bad_input(
        run(tmp_path, "config", "check", "--config", str(tmp_path / "c.toml")),
        "registries[0].isecure",
        "did you mean 'insecure'?",
    )


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ({"CACHE_MAX_SIZE": "12q"}, ("CACHE_MAX_SIZE", "'12q'")),
        ({"CACHE_INACTIVE": "-1d"}, ("CACHE_INACTIVE", "'-1d'")),
        ({"SEND_TIMEOUT": "-5"}, ("SEND_TIMEOUT", "'-5'")),
        ({"AUTH_REGISTRIES": ":user:pass"}, ("AUTH_REGISTRIES entry 1", "empty host")),
        ({"REGISTRIES": "https://quay.io"}, ("REGISTRIES", "'https://quay.io'", "scheme")),
        ({"VERIFY_SSL": "yes please"}, ("VERIFY_SSL", "'yes please'")),
    ],
)
def test_bad_env_values(tmp_path: Path, env: dict[str, str], fragments: tuple[str, ...]) -> None:
    assert_bad_input(run(tmp_path, "config", "check", env=env), *fragments)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('[cache]\nmax_size = "12q"\n', ("cache.max_size", "'12q'")),
        ('[timeouts]\nproxy_read = "-1m"\n', ("timeouts.proxy_read", "'-1m'")),
        ('[[registries]]\nhost = ""\n', ("registries[0].host", "empty host")),
    ],
)
def test_bad_toml_values(tmp_path: Path, text: str, fragments: tuple[str, ...]) -> None:
    (tmp_path / "c.toml").write_text(text)
    assert_bad_input(run(tmp_path, "config", "check", "--config", str(tmp_path / "c.toml")), *fragments)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("run", "--listen", "nowhere"), ("--listen", "'nowhere'")),
        (("run", "--resolve", "=1.2.3.4:5"), ("--resolve", "empty host")),
        (("run", "--tunnel", "*bad*"), ("--tunnel",)),
        (("run", "--bogus"), ("unrecognized arguments: --bogus",)),
        (("config", "frobnicate"), ("invalid choice: 'frobnicate'",)),
        (("run", "--config", "/nonexistent/c.toml"), ("/nonexistent/c.toml", "not found")),
    ],
)
def test_bad_flags(tmp_path: Path, args: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    assert_bad_input(run(tmp_path, *args), *fragments)


def test_keyring_reference_without_a_keyring_names_the_other_options(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("[[credentials]]\nscope = 'quay.io'\nusername = 'u'\nkeyring = true\n")
    assert_bad_input(
        run(tmp_path, "config", "check", "--config", str(tmp_path / "c.toml")),
        "credential quay.io",
        "no OS keyring",
        "password_file",
        "password_env",
    )


def test_env_file_format_refuses_values_with_newlines(tmp_path: Path) -> None:
    env = {
        "AUTH_REGISTRIES_DELIMITER": ";;;",
        "AUTH_REGISTRY_DELIMITER": ":::",
        "AUTH_REGISTRIES": "gcr.io:::_json_key:::{\n}",
    }
    assert_bad_input(
        run(tmp_path, "config", "export-env", "--format", "env-file", env=env), "AUTH_REGISTRIES"
    )
    plain = run(tmp_path, "config", "export-env", "--format", "env-file", env={"AUTH_REGISTRIES": "q.io:u:p"})
    assert "AUTH_REGISTRIES=q.io:u:p\n" in plain.stdout
