#!/usr/bin/env bash
# The GPU check, one run of at most about 9 minutes on a CUDA machine after the README's
# install (nothing else is installed):
#   1. updates/s at 1m, 12m and 200m, vectors and 64x64 pixels, eager vs compiled vs
#      compiled with CUDA graphs (run.cudagraphs=true), with peak GPU memory
#      (benchmarks/throughput.py, each case in its own process);
#   2. a DMC proprio run (dmc:walker_walk, the dmc_proprio preset) of about 3.5 minutes
#      and its curve (reverie plot).
# Each step has a time limit (seconds below), so the script ends in time whatever a
# compile costs; a step cut short says so and keeps the cases it finished.
#
#   bash benchmarks/gpu_check.sh                 # writes benchmarks/results/gpu_check/
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh
#
# Without CUDA it takes its dry path: the same steps on the CPU at 1m vectors, one update
# per case and a 15-second run, which checks the script, not the machine; the CUDA-graph
# case then ends in reverie's one-line refusal (CUDA graphs need CUDA).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$(command -v python)}
REVERIE=${REVERIE:-$(dirname "$PY")/reverie}
OUT=${OUT:-benchmarks/results/gpu_check}
mkdir -p "$OUT"
log="$OUT/gpu_check.txt"
: > "$log"
say() { echo "$*" | tee -a "$log"; }

if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  dry=0 sizes=(1m 12m 200m) kinds=(vector pixels) updates=5 limits=(90 150 150) run_s=210
  run_extra=()
else
  dry=1 sizes=(1m) kinds=(vector) updates=1 limits=(120 180 120) run_s=15
  # the dry path's run acts in its 15 s instead of compiling, and logs what it did
  run_extra=(run.compile=off run.log_every=3)
fi
MODES=${MODES:-eager compiled cudagraphs}  # a subset for a quicker check
say "# gpu_check $(date -u +%Y-%m-%dT%H:%MZ), reverie $(git rev-parse --short HEAD 2>/dev/null)"
"$PY" - <<'EOF' | tee -a "$log"
import torch
from reverie.accel import cpu_kind
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (dry path)"
print(f"# machine: {cpu_kind()}; GPU: {gpu}; torch {torch.__version__}")
EOF

modes=("eager:run.compile=off" "compiled:run.compile=on" "cudagraphs:run.compile=on run.cudagraphs=true")
for i in "${!modes[@]}"; do
  name=${modes[$i]%%:*} overrides=${modes[$i]#*:}
  [[ " $MODES " == *" $name "* ]] || continue
  say ""
  say "## $name ($overrides), sizes ${sizes[*]}, kinds ${kinds[*]}, $updates timed update(s) per case"
  # shellcheck disable=SC2086  # the overrides are separate words
  timeout -s KILL "${limits[$i]}" "$PY" benchmarks/throughput.py --sizes "${sizes[@]}" \
    --kinds "${kinds[@]}" --updates "$updates" --loop-seconds 0 \
    --json "$OUT/$name.json" $overrides 2>&1 | tee -a "$log"
  status=${PIPESTATUS[0]}
  [ "$status" = 137 ] && say "($name: stopped at its ${limits[$i]} s limit; the cases above finished)"
done

say ""
say "## DMC proprio, dmc:walker_walk (1 env), about $run_s s of training"
rm -rf "$OUT/dmc_walker_walk"
# SIGINT at the limit: reverie saves and exits, as after Ctrl-C
# one env (the preset's 16 would end their first episodes at 16,000 env steps, past what a
# few minutes train); the train ratio, 1024, is the preset's
timeout -s INT "$run_s" "$REVERIE" train --env dmc:walker_walk --logdir "$OUT/dmc_walker_walk" \
  --envs 1 run.progress=false run.tensorboard=false "${run_extra[@]}" 2>&1 | tail -n 3 | tee -a "$log"
"$PY" - "$OUT/dmc_walker_walk/metrics.jsonl" <<'EOF' | tee -a "$log"
import json, sys
try:
    rows = [json.loads(x) for x in open(sys.argv[1])]
except FileNotFoundError:
    rows = []
if not rows:
    sys.exit("no metrics: the run logged nothing in its time")
eps = [r for r in rows if "episode/return" in r]
ups = [r["train/updates"] for r in rows if "train/updates" in r]
print(f"env steps {rows[-1]['step']}, updates {ups[-1] if ups else 0}, episodes {len(eps)}")
for r in eps[-5:]:
    print(f"  step {r['step']}: return {r['episode/return']:.1f}")
EOF
"$REVERIE" plot "$OUT/dmc_walker_walk" --out "$OUT/dmc_walker_walk.png" >/dev/null 2>&1 \
  && say "curve: $OUT/dmc_walker_walk.png"
rm -rf "$OUT/dmc_walker_walk/replay" "$OUT/dmc_walker_walk"/checkpoint*.pt "$OUT/dmc_walker_walk/tensorboard"
say ""
say "done (dry path: $dry)"
