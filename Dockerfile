# syntax=docker/dockerfile:1
# The harness image, mssql-chaos-harness/harness:<version> (setup.cfg's version): the Locust
# load as a master or a worker pod (deploy/load/ gives only the args). Build it from the
# repository root; installing Microsoft ODBC Driver 18 accepts Microsoft's licence
# (https://aka.ms/odbc18eula), so the build asks for that explicitly:
#
#   docker build --build-arg ACCEPT_EULA=Y -t mssql-chaos-harness/harness:0.1.0 .
#
# The base image is pinned by tag only: this file was written where no registry could be
# reached, so no digest is claimed. Where one can be resolved, pin it as
# python:3.11-slim-bookworm@sha256:<digest> (`docker buildx imagetools inspect python:3.11-slim-bookworm`).
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="mssql-chaos-harness/harness" \
      org.opencontainers.image.description="Locust load of the SQL Server operator chaos harness (master or worker)" \
      org.opencontainers.image.licenses="Apache-2.0"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# unixODBC and the PostgreSQL ODBC driver (psqlODBC, the postgres dialect), at the versions
# Debian 12 ships (bookworm and its updates). The base image already has ca-certificates.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      unixodbc=2.3.11-2+deb12u1 \
      odbc-postgresql=1:13.02.0000-2+b1 \
 && rm -rf /var/lib/apt/lists/*

# Microsoft ODBC Driver 18 for SQL Server (the mssql dialect), from Microsoft's apt
# repository: the documented way to install it. The PyPI wheel mssql-python-odbc does carry
# the driver's Linux binaries, but it is an internal part of the mssql-python driver, "not
# intended for direct use", and registers no driver with unixODBC, so pyodbc could not name
# it. Microsoft's repository serves only its current driver, so the version is not pinned.
ARG ACCEPT_EULA=""
ADD --chmod=644 https://packages.microsoft.com/keys/microsoft.asc /usr/share/keyrings/microsoft-prod.asc
# hadolint ignore=DL3008
RUN if [ "${ACCEPT_EULA}" != "Y" ]; then \
      echo "docker build: pass --build-arg ACCEPT_EULA=Y to accept the Microsoft ODBC Driver 18 licence (https://aka.ms/odbc18eula)" >&2; \
      exit 2; \
    fi \
 && echo "deb [arch=$(dpkg --print-architecture) signed-by=/usr/share/keyrings/microsoft-prod.asc] https://packages.microsoft.com/debian/12/prod bookworm main" \
      > /etc/apt/sources.list.d/microsoft-prod.list \
 && apt-get update \
 && ACCEPT_EULA=Y apt-get install -y --no-install-recommends msodbcsql18 \
 && rm -rf /var/lib/apt/lists/*

# The harness itself, with the exact versions the Makefile installs (constraints.txt).
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir -c /app/constraints.txt /app

# Not root: uid 10001, no home, no login. The master and the workers write their journals
# under /var/run/harness (an emptyDir in the pods).
RUN useradd --no-log-init --uid 10001 --user-group --no-create-home --home-dir /var/run/harness \
      --shell /usr/sbin/nologin harness \
 && mkdir -p /var/run/harness \
 && chown 10001:10001 /var/run/harness
USER 10001
WORKDIR /var/run/harness

# 5557: the Locust master's worker port; 8089: its web UI and the /harness/ routes.
EXPOSE 5557 8089
ENTRYPOINT ["python", "-m", "locust", "-f", "/app/loadgen/locustfile.py"]
