# syntax=docker/dockerfile:1
# pulltag: one image for both halves (`pulltag webhook`, `pulltag listener`).
#   docker build -t ghcr.io/pulltag/pulltag:0.1.0 .

# --- build: a wheel of pulltag, then pulltag and its runtime dependencies (no test extra) in a venv
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY pulltag ./pulltag
COPY webhook ./webhook
COPY listener ./listener

RUN pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/pulltag \
 && /opt/pulltag/bin/pip install /wheels/pulltag-*.whl \
 && /opt/pulltag/bin/pulltag --version

# --- runtime: the venv only, as an unprivileged user
FROM python:3.11-slim

LABEL org.opencontainers.image.title="pulltag" \
      org.opencontainers.image.description="Tag container images in their registry once Kubernetes has really pulled them" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/pulltag/pulltag"

ENV PATH=/opt/pulltag/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN groupadd --system --gid 10001 pulltag \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin pulltag \
 && mkdir -p /var/lib/pulltag /etc/pulltag \
 && chown 10001:10001 /var/lib/pulltag

COPY --from=build /opt/pulltag /opt/pulltag

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /var/lib/pulltag
EXPOSE 8443 9090

ENTRYPOINT ["pulltag"]
CMD ["--help"]
