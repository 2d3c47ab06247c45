# ECR cost bot: `ecr-cost-bot serve` with its SQLite file on a volume.
# The image carries every optional source: Kubernetes (ECR_COST_KUBE_CONTEXTS) and the CUR (ECR_COST_CUR).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ECR_COST_DB=/data/ecr-cost.db \
    PORT=3000

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin bot \
    && mkdir /data && chown 10001:10001 /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip install --no-cache-dir '.[kube,cur]' && rm -rf /root/.cache

# numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd
USER 10001:10001
VOLUME ["/data"]
EXPOSE 3000
# both modes: serve writes a heartbeat beside its database (and answers GET /healthz on PORT in HTTP mode)
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["ecr-cost-bot", "health"]
CMD ["ecr-cost-bot", "serve"]
