# The Dagster image deployed by infra/bicep/modules/dagster.bicep: the code location (the default
# command, gRPC on port 4000), and the same image runs the webserver and the daemon with their own
# commands. It holds the package, dbt_like_sql/ (the SQL models and seeds the package reads next
# to itself), a dagster.yaml for the PostgreSQL instance and a workspace.yaml pointing at the code
# location app.
#
#   docker build -t chargeback-dagster:dev .
#
# The base is pinned by version and digest, once; both stages start from it so the virtualenv
# copied from the builder finds the same interpreter at the same path.
FROM python:3.12.12-slim-bookworm@sha256:593bd06efe90efa80dc4eee3948be7c0fde4134606dd40d8dd8dbcade98e669c AS base

FROM base AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# gcc builds the compiled envelope scanner (ADR 0008); only the builder has it, the runtime
# image gets the built module with the package. Without it the install still succeeds, slower.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
WORKDIR /opt/dagster/app
COPY setup.py pyproject.toml ./
COPY chargeback_pipeline ./chargeback_pipeline
# Editable on purpose: the package finds dbt_like_sql/ beside itself (settings.PROJECT_ROOT), so it
# stays at /opt/dagster/app and the venv only points there. The deploy extra adds dagster-postgres.
RUN /opt/venv/bin/pip install --no-cache-dir --editable ".[deploy]"

FROM base AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home
RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid dagster --no-create-home --shell /usr/sbin/nologin dagster
COPY --from=builder /opt/venv /opt/venv
WORKDIR /opt/dagster/app
COPY --from=builder /opt/dagster/app/chargeback_pipeline ./chargeback_pipeline
COPY --from=builder /opt/dagster/app/setup.py /opt/dagster/app/pyproject.toml ./
COPY dbt_like_sql ./dbt_like_sql
# The instance (runs, events, schedules) lives in PostgreSQL; DAGSTER_PG_* come from the container
# app's settings. The webserver and daemon reach the code location through its internal ingress.
RUN mkdir -p "$DAGSTER_HOME" \
    && printf '%s\n' \
        'storage:' \
        '  postgres:' \
        '    postgres_db:' \
        '      hostname: {env: DAGSTER_PG_HOST}' \
        '      username: {env: DAGSTER_PG_USERNAME}' \
        '      password: {env: DAGSTER_PG_PASSWORD}' \
        '      db_name: {env: DAGSTER_PG_DB}' \
        '      port: 5432' \
        '      params: {sslmode: require}' \
        'telemetry:' \
        '  enabled: false' \
        >"$DAGSTER_HOME/dagster.yaml" \
    && printf '%s\n' \
        'load_from:' \
        '  - grpc_server:' \
        '      host: {env: DAGSTER_CODE_LOCATION_HOST}' \
        '      port: 80' \
        '      location_name: chargeback_pipeline' \
        >/opt/dagster/app/workspace.yaml \
    && chown -R dagster:dagster "$DAGSTER_HOME"
USER dagster
EXPOSE 4000
# Docker and local runs; Container Apps uses its own probes and ignores this.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "-p", "4000"]
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "chargeback_pipeline.definitions"]
