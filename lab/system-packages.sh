#!/usr/bin/env bash
# Installs the Debian packages the lab and the load need, only when something is missing:
# PostgreSQL 15 (the stand-in engine, pgbench), psqlODBC and unixODBC (pyodbc's driver manager),
# kubectl when none is installed, Prometheus (promtool), Alertmanager and Chromium.
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
# promtool checks and unit-tests the alert rules (deploy/alerts); the lab runs its own Prometheus
# and Alertmanager with them; Chromium renders the HTML report in its test.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system packages missing: ${missing[*]}: run 'make setup' as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 2
fi

# Debian's prometheus packages start their daemons (as user prometheus, on :9090, :9093, :9100)
# where the init system lets them (in containers policy-rc.d refuses). The lab starts its own on
# free ports, so a daemon that this install started is stopped and kept from starting at boot;
# one that was already running before is someone's and left alone.
DAEMONS=(prometheus prometheus-alertmanager prometheus-node-exporter)
daemon_pids() {
  # pids of the packaged daemon $1 (pgrep -x sees the first 15 characters of a process name)
  id prometheus >/dev/null 2>&1 || return 0
  pgrep -x -u prometheus "${1:0:15}" || true
}
daemon_running() {
  # the process, or the service manager's word for it (systemd, else the init script)
  [ -n "$(daemon_pids "$1")" ] && return 0
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl is-active --quiet "$1" 2>/dev/null
  else
    [ -x "/etc/init.d/$1" ] && "/etc/init.d/$1" status >/dev/null 2>&1
  fi
}
stop_daemon() {
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl stop "$1" 2>/dev/null || true
    systemctl disable --quiet "$1" 2>/dev/null || true
  elif [ -x "/etc/init.d/$1" ]; then
    "/etc/init.d/$1" stop >/dev/null 2>&1 || true
    update-rc.d "$1" disable >/dev/null 2>&1 || true
  fi
  local pid
  for pid in $(daemon_pids "$1"); do
    kill "$pid" 2>/dev/null || true
  done
}
declare -A running_before=()
for daemon in "${DAEMONS[@]}"; do
  running_before[$daemon]=no
  if daemon_running "$daemon"; then running_before[$daemon]=yes; fi
done

echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for daemon in "${DAEMONS[@]}"; do
  if [ "${running_before[$daemon]}" = no ] && daemon_running "$daemon"; then
    echo "stopping $daemon, started by its Debian package (the lab runs its own)"
    stop_daemon "$daemon"
  fi
done
# Debian's postgresql package starts a cluster of its own on 5432; the lab runs its own servers.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | awk '$4 == "online" {print $1, $2}' | while read -r ver name; do
    pg_ctlcluster "$ver" "$name" stop || true
  done
fi
