# ECR cost bot: `ecr-cost-bot serve` with its SQLite file on a volume.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ECR_COST_DB=/data/ecr-cost.db \
    PORT=3000

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin bot \
    && mkdir /data && chown bot:bot /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER bot
VOLUME ["/data"]
EXPOSE 3000
CMD ["ecr-cost-bot", "serve"]
