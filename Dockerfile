# syntax=docker/dockerfile:1
# waitroom-proxy container image.
#   docker build -t waitroom-proxy:0.1.0 .
#   docker run --rm -p 8080:8080 -e WAITROOM_UPSTREAM=http://host.docker.internal:8000 \
#     waitroom-proxy:0.1.0 serve --host 0.0.0.0 --port 8080 --capacity 100
# The process writes nothing to disk: it runs with a read-only root filesystem (Kubernetes
# mounts an emptyDir at /tmp). Configuration comes from --config FILE and WAITROOM_* variables.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed, numeric non-root user: Kubernetes `runAsNonRoot` can verify it, and the Helm chart's
# securityContext (runAsUser 10001) matches it.
RUN groupadd --system --gid 10001 waitroom \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin waitroom

# Only what the package build needs (.dockerignore keeps everything else out of the context).
COPY requirements/runtime.txt /src/requirements/
COPY pyproject.toml README.md /src/
COPY waitroom_proxy /src/waitroom_proxy
COPY templates /src/templates
# The locked runtime dependencies (hashes checked; scripts/lock refreshes them), then a regular
# (non-editable) install of the package into site-packages; the sources are removed afterwards.
RUN pip install --require-hashes -r /src/requirements/runtime.txt \
 && pip install --no-deps --no-build-isolation /src && rm -rf /src

USER 10001:10001
WORKDIR /tmp

# 8080: visitors (proxy, waiting page, /_waitroom/*); 9090: admin API and /metrics (bearer token).
EXPOSE 8080 9090

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/_waitroom/healthz', timeout=2)"]

ENTRYPOINT ["waitroom-proxy"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
