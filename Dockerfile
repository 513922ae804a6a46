FROM python:3.11-slim-bookworm
# postgresql-client: pg_dump / pg_restore for `scripts/warehouse.py backup|restore` (the server is 15)
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
RUN pip install --no-cache-dir uv==0.13.8
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project --compile-bytecode
COPY optrader_pipelines ./optrader_pipelines
COPY assets ./assets
COPY sensors ./sensors
COPY resources ./resources
COPY jobs ./jobs
COPY scripts ./scripts
COPY deploy ./deploy
COPY workspace.yaml dagster.yaml ./
RUN uv sync --frozen --no-dev --compile-bytecode \
    && mkdir -p /opt/dagster/home /opt/optrader/reports /opt/optrader/jax-cache \
    && cp deploy/dagster.yaml /opt/dagster/home/dagster.yaml
ENV PATH="/app/.venv/bin:$PATH" DAGSTER_HOME=/opt/dagster/home PYTHONPATH=/app
EXPOSE 3000 4000
