# syntax=docker/dockerfile:1
# Xent in two stages. The build stage installs the pinned, hashed runtime dependencies of
# deploy/requirements.lock (with the `maps` extra, scipy, for /v1/recalibrate, and the `postgres`
# extra, psycopg, for monitors in PostgreSQL; no test or dev extras) into a virtualenv, then the service itself without resolving anything; the runtime
# stage copies only that virtualenv.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
RUN python -m venv /opt/xent
COPY deploy/requirements.lock /tmp/requirements.lock
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/xent/bin/python --require-hashes --requirement /tmp/requirements.lock
COPY pyproject.toml README.md /src/
COPY service /src/service
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/xent/bin/python --no-deps /src

FROM ${PYTHON_IMAGE}
RUN useradd --system --user-group --uid 10001 --no-create-home --shell /usr/sbin/nologin xent
COPY --from=build /opt/xent /opt/xent
# Settings come from XENT_* variables (service/settings.py): override XENT_WORKERS,
# XENT_MAX_BODY_BYTES, ... at run time. Bind all interfaces inside the container.
ENV PATH=/opt/xent/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XENT_HOST=0.0.0.0 \
    XENT_PORT=8000
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 CMD ["xent", "health"]
CMD ["python", "-m", "service", "serve"]
