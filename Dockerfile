# syntax=docker/dockerfile:1
# The streamdist operator image: `docker build -t localhost/streamdist/operator:0.1.0 .`
# (no registry publishes it; hack/build-images.sh builds the same image without Docker)
#
# Stage 1 builds the wheel of this repository and installs it with its dependencies
# (exact pins in pyproject.toml) into a virtualenv at /opt/venv. Stage 2 is a fresh
# copy of the same base with only that virtualenv added: no compiler, no pip, no
# source tree, no build cache. Both stages use the same pinned base, so the venv's
# interpreter path (/usr/local/bin/python3.11) exists in the final image.
# For reproducible builds, pin the base by digest too (python:3.11.14-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from (pyproject names README.md as the long description).
COPY pyproject.toml README.md ./
COPY operator/ operator/
# The control room's CSS (Bootstrap) from the npm registry at ui/package-lock.json's pins,
# into the package (hack/build-ui.sh); Debian's npm is a build tool of this stage only.
COPY ui/package.json ui/package-lock.json ui/
COPY hack/build-ui.sh hack/
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null \
 && bash hack/build-ui.sh
# Dependencies only as binary wheels: nothing is compiled, so no compiler is needed even here.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --only-binary=:all: /wheels/streamdist-*.whl \
 && /opt/venv/bin/pip uninstall --yes setuptools pip \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
 && /opt/venv/bin/python -c "import streamdist.cli, streamdist.handlers.registry, streamdist.ui.server" \
 && test -s /opt/venv/lib/python3.11/site-packages/streamdist/ui/static/vendor/bootstrap.min.css \
 && /opt/venv/bin/streamdist --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="streamdist operator" \
      org.opencontainers.image.description="Kubernetes operator for live video distribution (MediaMTX per input, FFmpeg per output)" \
      org.opencontainers.image.source="https://github.com/streamdist/streamdist" \
      org.opencontainers.image.licenses="Apache-2.0"
# The base's own pip and setuptools are build tools the operator never runs: drop them.
RUN python -m pip uninstall --yes pip setuptools wheel 2>/dev/null || true; \
    rm -rf /usr/local/lib/python3.11/ensurepip /usr/local/bin/pip* /root/.cache \
 && groupadd --system --gid 10001 streamdist \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin streamdist
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
# kopf's liveness endpoint (STREAMDIST_LIVENESS) and Prometheus metrics (STREAMDIST_METRICS_PORT).
EXPOSE 8080 9090
ENTRYPOINT ["streamdist", "run"]
