"""``appliance client-cert issue``: a certs.d directory for one identity, without a running engine."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509

from appliance.cli.main import main


def test_issue_writes_a_certificate_naming_the_identity_its_key_and_the_server_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "certs.d" / "appliance:3129"
    assert main(["client-cert", "issue", "node-1", "--out", str(out), "--ca-dir", str(tmp_path / "ca")]) == 0
    printed = capsys.readouterr().out
    assert "created the client CA" in printed and "node-1" in printed
    cert = x509.load_pem_x509_certificate((out / "client.cert").read_bytes())
    assert "CN=node-1" in cert.subject.rfc4514_string()
    # It verifies against the client CA and only against it, not the interception CA.
    context = ssl.create_default_context(cafile=str(tmp_path / "ca" / "client-ca.crt"))
    context.load_cert_chain(out / "client.cert", out / "client.key")
    assert (out / "ca.crt").read_bytes() == (tmp_path / "ca" / "ca.crt").read_bytes()
    assert (out / "client.key").stat().st_mode & 0o077 == 0
    # A second certificate reuses the client CA.
    assert (
        main(
            [
                "client-cert",
                "issue",
                "node-2",
                "--out",
                str(tmp_path / "n2"),
                "--ca-dir",
                str(tmp_path / "ca"),
            ]
        )
        == 0
    )
    assert "created the client CA" not in capsys.readouterr().out


def test_a_name_that_is_no_identity_is_refused_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["client-cert", "issue", "bad/name", "--out", str(tmp_path / "o"), "--ca-dir", str(tmp_path / "ca")]
    )
    assert code == 2
    assert "not an identity name" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
