# registry-appliance: a drop-in for the docker-registry-proxy image.
# Same port (3128), same volumes (/docker_mirror_cache, /ca), same environment variables, so every
# `docker run` line written for docker-registry-proxy works unchanged against this image.
#
#   docker build -t registry-appliance .
#   docker build --build-arg APPLIANCE_EXTRAS= -t registry-appliance:headless .   # without the dashboard
#
# Both stages use the same base so the virtualenv built in the first one finds the same interpreter
# at the same path in the second.  `make image-test` builds this file with buildah against a local
# stand-in for the base (see scripts/image-test.sh).
ARG PYTHON_IMAGE=docker.io/library/python:3.12-slim

FROM ${PYTHON_IMAGE} AS build
# "tui" puts the dashboard (Textual, pure Python, ~10 MB) in the image so that
# `docker exec -it <container> appliance tui` works; the engine never imports it.
ARG APPLIANCE_EXTRAS=tui
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so that a source change rebuilds only the small
# layer below.  Every dependency ships binary wheels: no compiler is needed (the slim base has none).
COPY pyproject.toml ./
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip install -q "setuptools>=77" wheel \
 && python3 -m venv /opt/appliance \
 && python3 -c 'import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
extras = [e for e in sys.argv[1].split(",") if e]; \
print("\n".join(p["dependencies"] + [d for e in extras for d in p["optional-dependencies"][e]]))' \
      "${APPLIANCE_EXTRAS}" > /tmp/requirements.txt \
 && /opt/appliance/bin/pip install -q --no-compile -r /tmp/requirements.txt \
 && /opt/appliance/bin/python -m compileall -q /opt/appliance/lib
# Then the wheel, installed into the venv; the final stage copies only the venv, so no source tree,
# build backend, wheel or pip reaches it.
COPY README.md ./
COPY appliance ./appliance
COPY tui ./tui
RUN /opt/build/bin/pip wheel -q --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/appliance/bin/pip install -q --no-deps --no-compile /wheels/registry_appliance-*.whl \
 && /opt/appliance/bin/pip check \
 && /opt/appliance/bin/pip uninstall -y -q pip setuptools \
 && /opt/appliance/bin/python -m compileall -q /opt/appliance/lib \
 && /opt/appliance/bin/appliance --version

FROM ${PYTHON_IMAGE}
ARG APPLIANCE_UID=10001
LABEL org.opencontainers.image.title="registry-appliance" \
      org.opencontainers.image.description="Caching proxy for container registries, drop-in for docker-registry-proxy" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/appliance/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CONFIG_HOME=/etc \
    XDG_DATA_HOME=/var/lib \
    APPLIANCE_UID=${APPLIANCE_UID}
COPY --from=build /opt/appliance /opt/appliance
COPY deploy/container/entrypoint.py /usr/local/bin/appliance-entrypoint
COPY deploy/container/healthcheck.py /usr/local/bin/appliance-healthcheck
COPY deploy/container/config.toml /etc/registry-appliance/config.toml
# /etc/registry-appliance/config.toml (found through XDG_CONFIG_HOME by every `appliance` command,
# `docker exec`'d ones included) points the cache and CA at the volumes and fixes the control socket
# at /var/lib/registry-appliance/control.sock.  The symlinks keep the same layout when a user mounts
# their own config.toml without those keys, since the built-in defaults live under XDG_DATA_HOME.
RUN groupadd --gid "${APPLIANCE_UID}" appliance \
 && useradd --uid "${APPLIANCE_UID}" --gid appliance --no-create-home \
      --home-dir /var/lib/registry-appliance --shell /usr/sbin/nologin appliance \
 && mkdir -p /docker_mirror_cache /ca /var/lib/registry-appliance \
 && ln -s /docker_mirror_cache /var/lib/registry-appliance/cache \
 && ln -s /ca /var/lib/registry-appliance/ca \
 && chown -h appliance:appliance /docker_mirror_cache /ca /var/lib/registry-appliance \
      /var/lib/registry-appliance/cache /var/lib/registry-appliance/ca \
 && chmod 0750 /ca \
 && chmod 0755 /usr/local/bin/appliance-entrypoint /usr/local/bin/appliance-healthcheck
VOLUME ["/docker_mirror_cache", "/ca"]
EXPOSE 3128
# The container starts as root only to hand root-owned volumes (a bind mount Docker just created, a
# /ca carried over from docker-registry-proxy) to uid APPLIANCE_UID; the entrypoint then drops to that
# uid before exec'ing the engine, which never runs as root.  Started as a non-root user (Kubernetes
# runAsUser, `docker run --user 10001`), the entrypoint changes nothing and just execs.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["appliance-healthcheck"]
ENTRYPOINT ["appliance-entrypoint", "appliance", "run"]
