"""Loading a trained policy: `reverie.load_policy` against the full `Dreamer(...)` path, and
the policy step's latency at batch 1 (load_policy, ONNX in onnxruntime, TorchScript).

    python benchmarks/policy_load.py --steps 50000 --logdir logs/bench_policy_load

First fills a CartPole logdir (size 1m) with `--steps` replay steps (acting only, no
updates: `run.train_fill` beyond the run), unless it holds them already. Each load is timed
in a fresh Python process, which reports its wall time and peak RSS (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOAD = {
    "load_policy": "from reverie import load_policy; p = load_policy({logdir!r})",
    "Dreamer": "from reverie import Dreamer; d = Dreamer(logdir={logdir!r}); d.close()",
}
PROBE = """
import resource, time, sys
t = time.perf_counter()
{code}
seconds = time.perf_counter() - t
print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def fill(logdir: Path, steps: int) -> None:
    if (logdir / "checkpoint.pt").exists():
        return
    from reverie.build import open_trainer
    from reverie.run_dir import resolve_config

    overrides = [f"run.train_fill={10 * steps}", "run.eval_every=0", "run.progress=false"]
    trainer = open_trainer(resolve_config(logdir, overrides), logdir)
    try:
        trainer.train(steps)
    finally:
        trainer.close()


def timed_load(kind: str, logdir: Path, repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        code = PROBE.format(code=LOAD[kind].format(logdir=str(logdir)))
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        seconds, rss = map(float, out.stdout.split()[-2:])
        runs.append((seconds, rss))
    best = min(runs)
    return {"seconds": best[0], "peak_rss_mb": max(r for _, r in runs)}


def step_latency(logdir: Path, repeats: int = 200) -> dict[str, float]:
    import numpy as np
    import onnxruntime
    import torch

    from reverie.policy import export_policy, load_policy

    torch.set_num_threads(1)
    policy = load_policy(logdir)
    obs = {"vector": np.zeros((1, 4), np.float32)}

    def clock(fn) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return 1000 * (time.perf_counter() - start) / repeats

    out = {"load_policy_ms": clock(lambda: policy.act(obs, None, True))}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_policy(policy, Path(tmp) / "p.onnx", "onnx")
        script_path = export_policy(policy, Path(tmp) / "p.pt", "torchscript")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(onnx_path), options)
        inputs = [x.numpy() for x in policy.example_inputs(1)]
        feed = {i.name: x for i, x in zip(session.get_inputs(), inputs, strict=True)}
        out["onnxruntime_ms"] = clock(lambda: session.run(None, feed))
        script = torch.jit.load(str(script_path))
        tensors = policy.example_inputs(1)
        with torch.inference_mode():
            out["torchscript_ms"] = clock(lambda: script(*tensors))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50_000, help="replay steps in the logdir")
    p.add_argument("--logdir", default="logs/bench_policy_load")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per load kind")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    logdir = Path(args.logdir)
    start = time.time()
    fill(logdir, args.steps)
    print(f"logdir {logdir}: {args.steps} replay steps ({time.time() - start:.0f} s to fill)")
    result = {kind: timed_load(kind, logdir, args.repeats) for kind in LOAD}
    result["step_latency_batch1"] = step_latency(logdir)
    for kind in LOAD:
        r = result[kind]
        print(f"{kind:>12}: {r['seconds']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB")
    for name, ms in result["step_latency_batch1"].items():
        print(f"policy step, batch 1, 1 thread: {name} {ms:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
