# airflow-migration-webhook: multi-stage, small, non-root, read-only-root-filesystem friendly.
# PYTHON_IMAGE: any Debian-based image with python3 and its venv module. The default is the index digest of
# docker.io/library/python:3.11-slim-bookworm as published on Docker Hub; re-pin with
#   docker buildx imagetools inspect docker.io/library/python:3.11-slim-bookworm
# (scripts/test-image.sh builds with a base made from Debian's own packages instead, and verifies the image)
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Hermetic: every file pip installs is pinned by hash (runtime dependencies, and setuptools to build the
# project without an isolated build environment that would fetch an unpinned one).
COPY requirements/runtime.lock requirements/build.lock requirements/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-deps --require-hashes -r requirements/runtime.lock -r requirements/build.lock
COPY pyproject.toml README.md ./
COPY app ./app
# Bytecode checked by hash, not by file time: COPY --from does not keep sub-second times, so timestamp pycs
# would be stale in the final image and recompiled (and never cached: read-only root) at every start.
# pip, setuptools and wheel are build tools: they do not ship.
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation --no-index . \
 && /opt/venv/bin/pip uninstall -y -q setuptools pip \
 && rm -rf /opt/venv/bin/pip* /opt/venv/lib/python3*/site-packages/wheel* \
 && /opt/venv/bin/python -m compileall -q -f --invalidation-mode unchecked-hash /opt/venv

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="airflow-migration-webhook" \
      org.opencontainers.image.description="Mutating admission webhook that makes Airflow DB migrations run under Argo CD" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# numeric UID/GID so runAsNonRoot can verify it; nothing is written at run time (read-only root works)
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["airflow-migration-webhook", "serve"]
