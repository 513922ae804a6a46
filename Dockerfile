FROM python:3.11-slim
WORKDIR /app
RUN pip install --no-cache-dir uv==0.13.8
COPY pyproject.toml uv.lock README.md ./
COPY optrader_pipelines ./optrader_pipelines
COPY assets ./assets
COPY sensors ./sensors
COPY resources ./resources
COPY workspace.yaml dagster.yaml ./
RUN uv sync --frozen --no-dev && mkdir -p /app/.dagster_home && cp dagster.yaml /app/.dagster_home/
ENV PATH="/app/.venv/bin:$PATH"
EXPOSE 3000
