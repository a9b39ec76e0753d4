# PineOps appliance: one container, every process under supervisord (see supervisord.conf).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PINEOPS_HOME=/app \
    PINEOPS_PYTHON=/usr/local/bin/python \
    PINEOPS_ENV=production \
    RUNTIME_DIR=/data \
    MODELS_DIR=/app/models

RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server util-linux \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 pineops \
 && useradd --system --uid 10001 --gid pineops --home-dir /app --shell /usr/sbin/nologin pineops

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY --chown=root:root . .
RUN mkdir -p /data && chown pineops:pineops /data

# Database (SQLite), bar store, heartbeats, Redis append-only file.
VOLUME ["/data"]
USER pineops
EXPOSE 8000

# supervisord stops every program on SIGTERM, each within its stopwaitsecs (the longest is 60 s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"

ENTRYPOINT ["/app/deploy/entrypoint.sh"]
