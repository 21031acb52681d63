# Kirby's production image: one image for every role (API, Dagster webserver and daemon,
# migrations); docker-compose.yml picks the command. Build: `docker build -t kirby .`

# --- build: install Kirby (non-editable, no dev extras) into a virtualenv ----------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# gcc and the C library's headers build Kirby's one compiled module (setup.py); the
# runtime stage copies the built virtualenv and needs neither
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/kirby
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY kirby_core/ kirby_core/
COPY kirby_cli/ kirby_cli/
COPY kirby_stream/ kirby_stream/
COPY kirby_api/ kirby_api/
COPY kirby_pipelines/ kirby_pipelines/
COPY kirby_sim/ kirby_sim/
COPY dbt_like_sql/ dbt_like_sql/
# Then check, from outside the source tree, that the installed code location loads and
# that the SQL models were installed where kirby_pipelines looks for them.
RUN /opt/kirby/bin/pip install . \
 && cd / \
 && /opt/kirby/bin/python -c "import kirby_pipelines.sql_models as m, kirby_pipelines.definitions as d; assert sorted(m.MODELS_DIR.glob('*.sql')), m.MODELS_DIR; d.defs()"

# --- runtime -----------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

ENV PATH=/opt/kirby/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAGSTER_HOME=/app

RUN groupadd --system --gid 10001 kirby \
 && useradd --system --uid 10001 --gid kirby --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin kirby

COPY --from=build /opt/kirby /opt/kirby

# /app is the working directory of every process and Dagster's home: dagster.yaml (the
# instance) and workspace.yaml (the code location; its `working_directory: .` is the
# process's current directory, i.e. /app) sit here, and so does config/ (the catalogs,
# found through the relative KIRBY_*_CATALOG defaults). No package source is copied here:
# /app is on the code server's sys.path and must not shadow the installed packages.
WORKDIR /app
COPY --chown=kirby:kirby dagster.yaml workspace.yaml ./
COPY --chown=kirby:kirby config/ config/
# lake/ (Parquet lake, KIRBY_LAKE_DIR), storage/ (Dagster's compute logs) and .kirby/
# (KIRBY_HOME) are written at run time; compose mounts volumes on the first two.
RUN mkdir -p lake storage .kirby && chown kirby:kirby /app lake storage .kirby

USER kirby
EXPOSE 8000 3000

CMD ["kirby", "api", "serve", "--host", "0.0.0.0", "--port", "8000"]
