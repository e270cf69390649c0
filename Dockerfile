# syntax=docker/dockerfile:1.7
# One image for every Sluice service. The entrypoint is the `sluice` CLI:
#   docker run IMAGE gateway|actions|parser|storage|api   one service
#   docker run IMAGE migrate                               apply the database migrations
#   docker run IMAGE topics                                create the Kafka topics
# Configuration is SLUICE_* environment variables (see README.md and deploy/README.md).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.8 AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/sluice
WORKDIR /src

# Third-party dependencies first, from the lock: this layer is rebuilt only when uv.lock or
# a pyproject.toml changes, not when the source does. Every workspace member's
# pyproject.toml is needed for uv to read the workspace.
COPY pyproject.toml uv.lock ./
COPY libs/sluice/pyproject.toml libs/sluice/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/actions/pyproject.toml services/actions/
COPY services/parser/pyproject.toml services/parser/
COPY services/storage/pyproject.toml services/storage/
COPY services/api/pyproject.toml services/api/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --all-packages --no-install-workspace

# Then Sluice itself, installed as wheels (not editable) so the runtime stage needs
# nothing from /src.
COPY libs/sluice libs/sluice
COPY services services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --all-packages --no-editable

FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric uid so Kubernetes can verify runAsNonRoot; /app is writable for
# `sluice run` (embedded shape, SQLite under ./.sluice) and nothing else needs to be.
RUN groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid sluice --no-create-home \
        --home-dir /app --shell /usr/sbin/nologin sluice \
    && install -d -o sluice -g sluice /app
COPY --from=build /opt/sluice /opt/sluice
COPY --chmod=0755 deploy/healthcheck.py /usr/local/bin/sluice-healthcheck
ENV PATH=/opt/sluice/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SLUICE_LOG_FORMAT=json
WORKDIR /app
USER 10001:10001
# MQTT, MQTT over TLS, MQTT over WebSocket, HTTP API, health/metrics of the other services.
EXPOSE 1883 8883 8083 8000 9000
ENTRYPOINT ["sluice"]
CMD ["--help"]
