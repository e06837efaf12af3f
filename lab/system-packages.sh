#!/usr/bin/env bash
# Installs the Debian packages the lab and the load need, only when something is missing:
# PostgreSQL 15 (the stand-in engine, pgbench), psqlODBC and unixODBC (pyodbc's driver manager),
# and kubectl when none is installed.
# Safe to run again; does nothing when all is present.
set -euo pipefail

missing=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || command -v pgbench >/dev/null || missing+=(postgresql-contrib)
command -v odbcinst >/dev/null 2>&1 || missing+=(unixodbc)
ls /usr/lib/*/odbc/psqlodbcw.so >/dev/null 2>&1 || missing+=(odbc-postgresql)
[ -e /usr/include/sql.h ] || missing+=(unixodbc-dev)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# kubectl drives the evidence snapshots and the RBAC preflight; Debian's client (1.20) works
# with the lab when no newer kubectl is installed.
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system packages missing: ${missing[*]}: run 'make setup' as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 2
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's postgresql package starts a cluster of its own on 5432; the lab runs its own servers.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | awk '$4 == "online" {print $1, $2}' | while read -r ver name; do
    pg_ctlcluster "$ver" "$name" stop || true
  done
fi
