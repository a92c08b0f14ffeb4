# syntax=docker/dockerfile:1
# airflow-migration-webhook: multi-stage, slim, non-root, read-only-root-filesystem friendly.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/runtime.lock requirements/runtime.lock
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-deps -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY app ./app
RUN /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/python -m compileall -q /opt/venv

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
