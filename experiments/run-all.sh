#!/usr/bin/env bash
# The main job (make demo): the embedded lab (with its Prometheus and Alertmanager), the fault and
# backup experiments and the alerting drill under load with `chaos run`, a short capacity sweep,
# then the go/no-go document over their run folders (Markdown and one self-contained HTML file).
# The lab is stopped at the end, whatever happened. Every experiment runs even if an earlier one
# failed.
#
#   experiments/run-all.sh [TENANTS] [NODES]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CHAOS=${CHAOS:-.venv/bin/chaos}
TENANTS=${1:-3}
NODES=${2:-3}
out="runs/demo-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"

"$PY" -m lab up --tenants "$TENANTS" --nodes "$NODES" || exit 2
trap '"$PY" -m lab down >/dev/null' EXIT
lab=$("$PY" -c 'from lab.paths import lab_dir; print(lab_dir())')
export KUBECONFIG="$lab/kubeconfig" HARNESS_RUNS_DIR="$out"

failed=0
for experiment in operator-restart pod-eviction node-drain node-restart pitr-restore backup-under-chaos alert-drill; do
  echo "== chaos run experiments/$experiment.json"
  "$CHAOS" --no-version-check --log-file "$out/chaostoolkit-$experiment.log" run \
    --rollback-strategy always --var-file experiments/lab.vars.json \
    --journal-path "$out/journal-$experiment.json" "experiments/$experiment.json" || failed=1
done

# A short capacity sweep: 2, 4 and 6 tenants of its own, a pod eviction at every step.
echo "== chaos run experiments/capacity.json (tenants 2 to 6, step 2, pod eviction at each step)"
HARNESS_OBSERVE_SECONDS=${HARNESS_OBSERVE_SECONDS:-7} "$CHAOS" --no-version-check \
  --log-file "$out/chaostoolkit-capacity.log" run --var-file experiments/lab.vars.json \
  --journal-path "$out/journal-capacity.json" experiments/capacity.json || failed=1

runs=$(find "$out" -mindepth 1 -maxdepth 1 -type d | sort)
# shellcheck disable=SC2086
"$PY" -m reports gonogo $runs --out "$out/07-metrics-go-no-go.md" || exit 2
[ "$failed" = 0 ] || echo "note: at least one chaos run failed; the report says which" >&2
echo "report: $out/07-metrics-go-no-go.md"
[ -f "$out/07-metrics-go-no-go.html" ] && echo "report (HTML): $out/07-metrics-go-no-go.html"
exit 0
