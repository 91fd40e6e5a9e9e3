#!/usr/bin/env bash
# Build the Dockerfile and run the image without a Docker engine or a registry (issue 8).
#
#   1. stand-in base: `debootstrap --variant=minbase bookworm` + python3, python3-venv, python3-pip,
#      ca-certificates, `podman import`ed and tagged as the Dockerfile's base (PYTHON_IMAGE).  It is NOT
#      the real python:3.12-slim (no registry is reachable here), only the same kind of Debian+Python.
#   2. `buildah bud --isolation chroot --pull=never --format docker` (docker format keeps HEALTHCHECK);
#      pip in the build reaches the package index through the host's CA bundle, mounted read-only.
#   3. `podman --runtime runc run -d --network host` with the seed README's simple `docker run`
#      environment, then: GET /ca.crt, a non-root engine, the volumes, `podman healthcheck run`.
#
# Cached between runs in $IMAGE_BASE_CACHE (default /var/tmp/registry-appliance-image-base): the
# debootstrap rootfs tarball and an image store holding the stand-in base and the build's layer cache
# (the dependency layer only changes with pyproject.toml).  Everything else (runroot, the test
# image, container, volumes) lives in a temp dir removed on exit.  IMAGE_TEST_FRESH=1 builds in a
# temp store instead (import + full build, the literal procedure: ~1 min, plus debootstrap once).
#
# Exit status: 0 pass, 1 fail, 77 skipped (the reason is printed: not root, a tool, the Debian mirror
# or the package index missing).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BASE_CACHE="${IMAGE_BASE_CACHE:-/var/tmp/registry-appliance-image-base}"
MIRROR="${DEBIAN_MIRROR:-$(awk '/^URIs:/ && /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
BASE_IMAGE="$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$ROOT/Dockerfile" | head -n1)"
APPLIANCE_UID=10001
NAME="registry-appliance-image-test-$$"

skip() { echo "image-test: SKIP: $*" >&2; exit 77; }
fail() { echo "image-test: FAIL: $*" >&2; exit 1; }
step() { printf 'image-test: [%5.1fs] %s\n' "$(( $(date +%s%N) / 1000000 - START_MS ))e-3" "$*" >&2; }
START_MS=$(( $(date +%s%N) / 1000000 ))

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, rootful buildah/podman storage)"
for tool in debootstrap buildah podman runc curl openssl; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (apt-get install debootstrap buildah podman runc curl openssl)"
done
[ -n "$BASE_IMAGE" ] || fail "no 'ARG PYTHON_IMAGE=' line in Dockerfile"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
[ -r "$CA_BUNDLE" ] || skip "no host CA bundle at $CA_BUNDLE (pip in the build needs it)"

if [ ! -s "$BASE_CACHE/rootfs.tar" ] && ! curl -fsSI --max-time 15 "$MIRROR/dists/bookworm/Release" >/dev/null 2>&1; then
  skip "no stand-in base cached and the Debian mirror $MIRROR is unreachable"
fi
curl -fsSI --max-time 15 https://pypi.org/simple/pip/ >/dev/null 2>&1 \
  || skip "the package index (https://pypi.org) is unreachable: pip in the build needs it"

# Short paths on purpose: with a runroot much over ~48 characters, conmon misses the container's exit
# and every `podman run --rm` waits out its 20 s timeout.
TMP="$(mktemp -d /var/tmp/ra-image.XXXXXX)"
# The build store holds the stand-in base and buildah's layer cache.  The containers run from a
# separate temp store that sees the build store read-only (additionalimagestores), so podman's
# database, runroot and containers all live and die in $TMP.
if [ "${IMAGE_TEST_FRESH:-0}" = 1 ]; then
  BUILD_STORE="$TMP/build-store"
  IMPORT_RUNROOT="$TMP/import-run"
  TAG="localhost/registry-appliance:image-test-$$"
else
  BUILD_STORE="$BASE_CACHE/storage"
  IMPORT_RUNROOT="$BASE_CACHE/import-run"
  TAG="localhost/registry-appliance:image-test"
fi
BUILD=(--root "$BUILD_STORE" --runroot "$TMP/brun" --storage-driver overlay)
cat >"$TMP/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$TMP/store"
runroot = "$TMP/run"
[storage.options]
additionalimagestores = ["$BUILD_STORE"]
CONF
# runc here may not raise rlimits past the host's, and no systemd runs healthcheck timers.
RUN_FLAGS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768 --health-interval disable)
# Without systemd, podman logs an error for every healthcheck timer it cannot add or remove; the
# checks here run `podman healthcheck run` by hand, so only that noise is dropped.
pod() {
  CONTAINERS_STORAGE_CONF="$TMP/storage.conf" podman --tmpdir "$TMP/libpod" --runtime runc --cgroup-manager cgroupfs --events-backend none "$@" \
    2> >(grep -v 'unable to get systemd connection' >&2)
}

cleanup() {
  local status=$?
  if [ "$status" != 0 ] && [ "$status" != 77 ] && pod container exists "$NAME" 2>/dev/null; then
    echo "--- container log ---" >&2; pod logs "$NAME" 2>&1 | tail -n 40 >&2 || true
  fi
  pod rm -af -t 2 >/dev/null 2>&1 || true
  buildah "${BUILD[@]}" rm --all >/dev/null 2>&1 || true
  [ "${IMAGE_TEST_FRESH:-0}" = 1 ] || buildah "${BUILD[@]}" rmi --prune >/dev/null 2>&1 || true
  # Nothing of ours may stay mounted when the temp dir goes.
  findmnt -rn -o TARGET | grep -F -e "$TMP/" -e "$BUILD_STORE/" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. stand-in base --------------------------------------------------------------------------
mkdir -p "$BASE_CACHE"
if [ ! -s "$BASE_CACHE/rootfs.tar" ]; then
  step "debootstrap minbase bookworm from $MIRROR (once, ~1 min)"
  rm -rf "$BASE_CACHE/rootfs.partial"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$BASE_CACHE/rootfs.partial" "$MIRROR" >"$BASE_CACHE/debootstrap.log" 2>&1 \
    || { tail -n 20 "$BASE_CACHE/debootstrap.log" >&2; fail "debootstrap failed (log: $BASE_CACHE/debootstrap.log)"; }
  rm -rf "$BASE_CACHE"/rootfs.partial/var/cache/apt/archives/*.deb "$BASE_CACHE"/rootfs.partial/var/lib/apt/lists/*
  tar -C "$BASE_CACHE/rootfs.partial" -cf "$BASE_CACHE/rootfs.tar.partial" .
  mv "$BASE_CACHE/rootfs.tar.partial" "$BASE_CACHE/rootfs.tar"
  rm -rf "$BASE_CACHE/rootfs.partial"
fi
if ! buildah "${BUILD[@]}" inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
  step "podman import the stand-in base as $BASE_IMAGE"
  # Its own fixed runroot: podman's database in the build store remembers it.
  podman --root "$BUILD_STORE" --runroot "$IMPORT_RUNROOT" --storage-driver overlay --events-backend none import --quiet "$BASE_CACHE/rootfs.tar" "$BASE_IMAGE" >/dev/null
fi

# --- 2. build ------------------------------------------------------------------------------------
step "buildah bud (store $BUILD_STORE)"
BUD=(bud --isolation chroot --pull=never --format docker --layers -v "$CA_BUNDLE:$CA_BUNDLE:ro" -f "$ROOT/Dockerfile")
# The build stage is tagged too: untagged, its layers (the dependency install) would be pruned as
# dangling after every run and the cache would never hit.
buildah "${BUILD[@]}" "${BUD[@]}" --target build -t "$TAG-build" "$ROOT" >"$TMP/build.log" 2>&1 \
  && buildah "${BUILD[@]}" "${BUD[@]}" -t "$TAG" "$ROOT" >>"$TMP/build.log" 2>&1 \
  || { tail -n 40 "$TMP/build.log" >&2; fail "buildah bud failed"; }
step "built $TAG ($(grep -c 'Using cache' "$TMP/build.log") steps from cache)"

inspect() { pod image inspect --format "$1" "$TAG"; }
[ "$(inspect '{{json .Config.ExposedPorts}}')" = '{"3128/tcp":{}}' ] || fail "EXPOSE 3128 missing"
volumes="$(inspect '{{json .Config.Volumes}}')"
for volume in /docker_mirror_cache /ca; do
  [[ "$volumes" == *"\"$volume\""* ]] || fail "VOLUME $volume missing (got $volumes)"
done
[[ "$(inspect '{{json .Config.Entrypoint}}')" == *'"appliance","run"]' ]] || fail "ENTRYPOINT is not appliance run"
[[ "$(pod image inspect --format '{{json .HealthCheck}}' "$TAG")" == *appliance-healthcheck* ]] \
  || fail "HEALTHCHECK lost (not built with --format docker?)"
# To a file, not $(...): conmon inherits podman's stdout and lingers after `run --rm` returns.
pod run --rm "${RUN_FLAGS[@]}" --network none --entrypoint sh "$TAG" -c \
  'for c in gcc cc g++ clang make; do command -v $c; done; true' >"$TMP/compilers"
compilers="$(cat "$TMP/compilers")"
[ -z "$compilers" ] || fail "compilers in the final image: $compilers"

# --- 3. run: the seed README's simple example, ported to podman ---------------------------------
# `-p 0.0.0.0:3128:3128` becomes --network host plus LISTEN on a free loopback port, so the test
# never exposes anything or collides with a real 3128.  The host dirs are created by root, as Docker
# does for a missing bind-mount source; /ca already holds a seed-style CA (RSA, key encrypted with
# the seed's passphrase, root-owned 0600), as after `docker rm` of a docker-registry-proxy.
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -m 0755 "$TMP/docker_mirror_cache" "$TMP/docker_mirror_certs"
openssl req -x509 -newkey rsa:2048 -days 30 -subj "/CN=seed docker-registry-proxy CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -passout pass:foobar -keyout "$TMP/docker_mirror_certs/ca.key" -out "$TMP/docker_mirror_certs/ca.crt" 2>/dev/null
chmod 0600 "$TMP/docker_mirror_certs/ca.key"

step "podman run (port $PORT)"
pod run -d --name "$NAME" --network host "${RUN_FLAGS[@]}" \
  -v "$TMP/docker_mirror_cache:/docker_mirror_cache" \
  -v "$TMP/docker_mirror_certs:/ca" \
  -e REGISTRIES="k8s.gcr.io gcr.io quay.io your.own.registry another.public.registry" \
  -e AUTH_REGISTRIES="auth.docker.io:dockerhub_username:dockerhub_password your.own.registry:username:password" \
  -e LISTEN="127.0.0.1:$PORT" \
  "$TAG" >/dev/null

ca=""
for _ in $(seq 1 100); do
  ca="$(curl -fsS --noproxy '*' "http://127.0.0.1:$PORT/ca.crt" 2>/dev/null)" && break
  [ "$(pod inspect --format '{{.State.Running}}' "$NAME")" = true ] || fail "container exited"
  sleep 0.1
done
[[ "$ca" == "-----BEGIN CERTIFICATE-----"* ]] || fail "GET /ca.crt did not answer a PEM certificate"
[ "$ca" = "$(cat "$TMP/docker_mirror_certs/ca.crt")" ] || fail "GET /ca.crt is not the seed CA kept in /ca"
step "GET /ca.crt answers the seed's CA from the /ca volume"

pid="$(pod inspect --format '{{.State.Pid}}' "$NAME")"
uids="$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")"
[ "$uids" = "$APPLIANCE_UID $APPLIANCE_UID $APPLIANCE_UID $APPLIANCE_UID" ] \
  || fail "the engine (pid $pid) runs with uids '$uids', expected $APPLIANCE_UID"
grep -q 'appliance' "/proc/$pid/cmdline" || fail "pid 1 is not the engine"
step "engine runs as uid $APPLIANCE_UID"

for dir in docker_mirror_cache docker_mirror_certs; do
  [ "$(stat -c %u "$TMP/$dir")" = "$APPLIANCE_UID" ] || fail "volume $dir not handed to uid $APPLIANCE_UID"
done
[ "$(stat -c %u "$TMP/docker_mirror_certs/ca.key")" = "$APPLIANCE_UID" ] || fail "ca.key not handed over"
[ -n "$(ls -A "$TMP/docker_mirror_cache")" ] || fail "the engine wrote nothing to /docker_mirror_cache"
mounts="$(pod inspect --format '{{range .Mounts}}{{.Destination}}={{.Source}} {{end}}' "$NAME")"
[[ "$mounts" == *"/docker_mirror_cache=$TMP/docker_mirror_cache"* && "$mounts" == *"/ca=$TMP/docker_mirror_certs"* ]] \
  || fail "volumes not mounted as given: $mounts"
step "volumes mounted, handed to the appliance user, written"

pod healthcheck run "$NAME" >/dev/null || fail "podman healthcheck run: unhealthy"
step "podman healthcheck run: healthy"

check="$(pod exec "$NAME" appliance config check)" || fail "appliance config check failed in the container"
for want in "cache:          /docker_mirror_cache" "CA:             /ca/ca.crt" \
            "control socket: /var/lib/registry-appliance/control.sock" "your.own.registry" \
            "auth.docker.io: user 'dockerhub_username'"; do
  [[ "$check" == *"$want"* ]] || fail "docker exec'd config check lacks '$want':"$'\n'"$check"
done
[[ "$check" != *dockerhub_password* ]] || fail "config check printed a password"
pod exec "$NAME" python3 -c 'import textual' || fail "textual missing: no tui in the image"
# What `docker exec -it <c> appliance tui` relies on: a CLI in the container reaching the engine
# over the control socket, found from the image's configuration without flags.
pod exec "$NAME" appliance status >"$TMP/status" 2>&1 \
  || fail "appliance status over the control socket failed: $(cat "$TMP/status")"
step "docker exec sees the same config and reaches the engine's control socket; textual present"

pod stop -t 10 "$NAME" >/dev/null
[ "$(pod inspect --format '{{.State.ExitCode}}' "$NAME")" = 0 ] || fail "the engine did not stop cleanly on SIGTERM"
step "PASS"
