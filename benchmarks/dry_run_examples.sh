#!/usr/bin/env bash
# `reverie train --dry-run` for CartPole 1m, DMC proprio 1m and Atari 200m, and the dry
# run's estimate next to a measured short CartPole run (the same machine, one after the
# other), into benchmarks/results/dry_run/. Run from the repo root with the venv's
# reverie on PATH; CORES (default: all) pins them, e.g. CORES=0.
set -euo pipefail
out=benchmarks/results/dry_run
mkdir -p "$out"
pin=(); [ -n "${CORES:-}" ] && pin=(taskset -c "$CORES")
machine=$(python -c "from reverie.accel import cpu_kind; print(cpu_kind())")
stamp() { echo "# $(date -u +%Y-%m-%dT%H:%MZ), reverie $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes'), $machine, cores: ${CORES:-all}"; }
run() {  # name, then the reverie arguments
  local name=$1; shift
  { stamp; echo "\$ reverie $*"; "${pin[@]}" reverie "$@" 2>&1; } > "$out/$name.txt"
  echo "wrote $out/$name.txt"
}
run cartpole_1m train --dry-run
run dmc_proprio_1m train --env dmc:walker_walk --dry-run
run atari_200m train --env atari:pong --size 200m --dry-run
# the estimate beside a real run of the same budget
run compare_estimate train --steps 1400 --dry-run
logdir=$(mktemp -d)/run
{ stamp; echo "\$ reverie train --steps 1400 --logdir $logdir run.progress=false"
  start=$(date +%s.%N)
  "${pin[@]}" reverie train --steps 1400 --logdir "$logdir" run.progress=false 2>&1
  echo "whole process: $(python -c "print(f'{$(date +%s.%N) - $start:.1f}')") s"
} > "$out/compare_run.txt"
rm -rf "$(dirname "$logdir")"
echo "wrote $out/compare_run.txt"
