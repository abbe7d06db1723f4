"""Time to the first update of `reverie train`, from a cold and from a warm compile cache.

    python benchmarks/cold_start.py                   # the default run (CartPole, compiled)
    python benchmarks/cold_start.py -- --env gym:Pendulum-v1

Runs `reverie train --steps 1025` (replay fills with 1024 steps, then the first update,
which compiles) four times: with an empty Inductor cache folder (cold), with the folder
the first run filled (warm), from that folder again at another learner thread count
(`run.threads`: 1 where this process may use more cores, else 2), and with the folder
`make install` warms (~/.cache/reverie/inductor, or TORCHINDUCTOR_CACHE_DIR). Prints, for
each, the seconds from the launch to the first train line of metrics.jsonl that counts an
update, and to the end. Arguments after `--` go to `reverie train`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reverie.accel import cpu_kind
from reverie.machine import usable_cores


def first_update_seconds(cmd: list[str], logdir: Path, env: dict[str, str]) -> dict:
    start = time.time()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    end = time.time() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    lines = [json.loads(x) for x in (logdir / "metrics.jsonl").read_text().splitlines()]
    first = next(x for x in lines if x.get("train/updates", 0) >= 1)
    return {"first_update_s": first["time"] - start, "total_s": end}


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    reverie = str(Path(sys.executable).with_name("reverie"))
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    installed = os.environ.get("TORCHINDUCTOR_CACHE_DIR", str(home / "reverie" / "inductor"))
    # the learner's own count is the cores it may use; the other one is what a run pinned
    # differently from the cache's filler (make install, taskset, run.threads) would have
    threads = usable_cores()
    other = 2 if threads == 1 else 1
    print(f"machine: {cpu_kind()}; learner threads {threads}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            ("cold", f"{tmp}/cache", []),
            ("warm", f"{tmp}/cache", []),
            (f"warm, {other} thr", f"{tmp}/cache", [f"run.threads={other}"]),
            ("make install", installed, []),
        ]
        for i, (name, cache, threads_setting) in enumerate(cases):
            logdir = Path(tmp) / f"run{i}"
            cmd = [reverie, "train", "--logdir", str(logdir), "--steps", "1025"]
            cmd += ["run.progress=false", "run.tensorboard=false", "run.eval_every=0"]
            cmd += ["run.log_every=0", *threads_setting, *extra]
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
            result = first_update_seconds(cmd, logdir, env)
            print(
                f"{name:>12}: first update {result['first_update_s']:6.1f} s after the "
                f"launch, done {result['total_s']:6.1f} s (cache {cache})",
                flush=True,
            )


if __name__ == "__main__":
    main()
