"""The peers the appliance is measured against, started on loopback with their own configs.

* the upstream itself: CNCF distribution (``docker-registry``) over TLS, from ``tests.fixtures``;
* distribution in pull-through-cache mode (a ``proxy:`` section whose ``remoteurl`` is that
  upstream; it trusts the test CA through ``SSL_CERT_FILE``);
* nginx serving a directory over TLS and over plain HTTP with ``sendfile``;
* the appliance (``tests.fixtures.appliance.Appliance``) configured for the upstream.

Nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from bench.images import push_big_image
from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.images import ImageInfo, push_image
from tests.fixtures.pki import REGISTRY_HOST, TestPKI, make_pki
from tests.fixtures.process import FixtureError, clean_env, free_port, log_tail, spawn, terminate
from tests.fixtures.registry import UpstreamRegistry

# The fixture builds layers in memory with random.randbytes, which stops well below 256 MiB.
_FIXTURE_LAYER_LIMIT = 32 * 1024 * 1024
REQUIRED_BINARIES = ("docker-registry", "skopeo", "nginx", "curl")
_READY_TIMEOUT = 15.0


def missing_binaries() -> list[str]:
    return [name for name in REQUIRED_BINARIES if shutil.which(name) is None]


class DistributionCache(UpstreamRegistry):
    """docker-registry as a pull-through cache of ``upstream`` (TLS towards clients and upstream)."""

    def __init__(self, workdir: Path, pki: TestPKI, upstream: UpstreamRegistry) -> None:
        super().__init__(workdir, pki)
        self.upstream = upstream

    def _config(self) -> dict[str, object]:
        config = super()._config()
        config["proxy"] = {"remoteurl": upstream_url(self.upstream)}
        return config

    def start(self, attempts: int = 1) -> None:
        if self.running:
            return
        self.port = self.port or free_port()
        self.config_file.write_text(json.dumps(self._config(), indent=2))
        assert self.pki is not None
        env = clean_env({"SSL_CERT_FILE": str(self.pki.ca_file)}, drop_prefixes=("REGISTRY_",))
        self._proc = spawn([self._binary, "serve", str(self.config_file)], self.log_file, env)
        self._wait_ready()


def upstream_url(registry: UpstreamRegistry) -> str:
    # 127.0.0.1 is an IP SAN of the test certificate, so the cache verifies it like any client.
    return f"{registry.scheme}://{registry.host_port}"


@dataclass
class Nginx:
    """nginx serving ``root`` over TLS (``tls_port``) and plain HTTP with sendfile (``plain_port``)."""

    workdir: Path
    root: Path
    pki: TestPKI

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls_port = free_port()
        self.plain_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = self.workdir / "nginx.log"

    def _config(self) -> str:
        server = self.pki.server(REGISTRY_HOST)
        user = "user root;" if os.geteuid() == 0 else ""
        temp = self.workdir / "temp"
        temp.mkdir(exist_ok=True)
        return f"""
{user}
worker_processes 1;
daemon off;
pid {self.workdir / "nginx.pid"};
error_log {self.workdir / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{self.plain_port};
        sendfile on;
        tcp_nopush on;
        root {self.root};
    }}
    server {{
        listen 127.0.0.1:{self.tls_port} ssl;
        ssl_certificate {server.cert_file};
        ssl_certificate_key {server.key_file};
        root {self.root};
    }}
}}
"""

    def start(self) -> None:
        binary = shutil.which("nginx")
        if binary is None:
            raise FixtureError("nginx is not installed")
        conf = self.workdir / "nginx.conf"
        conf.write_text(self._config())
        self.proc = spawn([binary, "-p", str(self.workdir), "-c", str(conf)], self.log_file, clean_env())
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise FixtureError(
                    f"nginx exited: {log_tail(self.log_file)}{log_tail(self.workdir / 'error.log')}"
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.plain_port, timeout=1)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                time.sleep(0.05)
        raise FixtureError("nginx did not answer")

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None


class Lab:
    """What several benchmarks share: the test CA, the upstream registry and the images pushed to it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pki = make_pki(workdir / "pki")
        self.upstream = UpstreamRegistry(workdir / "upstream", self.pki)
        self.upstream.start()
        self._images: dict[tuple[str, tuple[int, ...]], ImageInfo] = {}

    def image(self, name: str, layer_sizes: tuple[int, ...]) -> ImageInfo:
        """``bench/NAME:latest`` with these layers, pushed once (seeded by name: stable digests)."""
        key = (name, layer_sizes)
        if key in self._images:
            return self._images[key]
        if max(layer_sizes) > _FIXTURE_LAYER_LIMIT:
            image = push_big_image(self.upstream, f"bench/{name}", self.workdir / "images", layer_sizes)
        else:
            image = push_image(
                self.upstream,
                f"bench/{name}",
                self.workdir / "images",
                layer_sizes=layer_sizes,
                seed=zlib.crc32(f"{name}{layer_sizes}".encode()),
            )
        settle()
        self._images[key] = image
        return image

    def close(self) -> None:
        self.upstream.stop()


def settle() -> None:
    """Flush dirty pages before timing: a push or a priming pull leaves hundreds of MB for the
    kernel to write back, which otherwise lands on the first timed rounds (they ran 10-20 % slower
    than the rest in full runs)."""
    os.sync()


def appliance_for(workdir: Path, pki: TestPKI, upstream: UpstreamRegistry) -> Appliance:
    """An appliance (not started) serving ``upstream`` under its made-up name."""
    spec = UpstreamSpec(upstream.name_port, upstream.host_port)
    return Appliance(workdir, [spec], upstream_ca=pki.ca_file)


def restart_empty(appliance: Appliance) -> None:
    """Stop, wipe the cache (keeping the CA, so clients keep trusting it), start again."""
    appliance.stop()
    shutil.rmtree(appliance.cache_dir, ignore_errors=True)
    appliance.start()


def appliance_ca(appliance: Appliance) -> Path:
    return appliance.cert_dir() / "ca.crt"


def random_file(path: Path, size: int) -> str:
    """Write ``size`` random (incompressible) bytes and return their digest."""
    hasher = hashlib.sha256()
    with path.open("wb") as out:
        written = 0
        while written < size:
            chunk = os.urandom(min(4 * 1024 * 1024, size - written))
            out.write(chunk)
            hasher.update(chunk)
            written += len(chunk)
    return "sha256:" + hasher.hexdigest()


def upload_blob(registry: UpstreamRegistry, repository: str, path: Path, digest: str) -> None:
    """Monolithic upload (POST then PUT ?digest=) streamed from ``path``."""
    assert registry.ca_file is not None
    context = ssl.create_default_context(cafile=str(registry.ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", registry.port, context=context, timeout=300)
    try:
        conn.request("POST", f"/v2/{repository}/blobs/uploads/")
        answer = conn.getresponse()
        answer.read()
        if answer.status != 202:
            raise FixtureError(f"upload start answered {answer.status}")
        location = answer.headers["Location"]
        sep = "&" if "?" in location else "?"
        target = location.split("://", 1)[-1]
        target = target[target.index("/") :] if not location.startswith("/") else location
        size = path.stat().st_size
        with path.open("rb") as body:
            conn.request(
                "PUT",
                f"{target}{sep}digest={digest}",
                body=body,
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            )
            done = conn.getresponse()
            done.read()
        if done.status != 201:
            raise FixtureError(f"upload of {digest} answered {done.status}")
    finally:
        conn.close()


def curl_fetch(url: str, *, proxy: str | None = None, cacert: Path | None = None) -> tuple[int, float]:
    """(bytes, seconds) for one GET with curl writing to /dev/null; fails on any HTTP error."""
    argv = ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download} %{time_total}"]
    if proxy:
        argv += ["--proxy", proxy]
    else:
        argv += ["--noproxy", "*"]
    if cacert is not None:
        argv += ["--cacert", str(cacert)]
    argv.append(url)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, env=clean_env())
    if done.returncode != 0:
        raise FixtureError(f"curl {url} failed ({done.returncode}): {done.stderr.strip()}")
    size, seconds = done.stdout.split()
    return int(size), float(seconds)


def wait_http(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
