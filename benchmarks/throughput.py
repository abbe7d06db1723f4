"""Throughput of reverie: updates/s, env steps/s of the training loop, policy latency,
FLOPs per update and peak memory, per size and input kind. Each case runs in its own
process so that peak memory is its own.

    python benchmarks/throughput.py                       # 1m and 12m, vector and pixels
    python benchmarks/throughput.py --sizes 1m --kinds vector --updates 10 --json out.json

    python benchmarks/throughput.py --sizes 50m 200m --updates 1 --loop-seconds 0 run.compile=off

    python benchmarks/throughput.py --sizes 1m --kinds vector --ddp 2 --threads 2

`--ddp N` measures data-parallel updates instead (reverie.distributed, through torchrun):
one process with `--threads` threads against N ranks with `--threads // N` each (at least
1), the global batch split over the ranks, in turns (`--turns`), and prints updates/s,
the speed-up and the efficiency per core (CPU) or per device (CUDA: one GPU per rank).

Env steps/s is measured on the whole training loop (acting, replay, updates at the
train ratio) on CartPole (vector) or CartPole rendered to 64x64 pixels (pixels);
`--loop-seconds 0` skips it (an update of the large sizes is slow on a CPU).
Runs on CUDA when present (or `run.device=...`), with peak device memory. FLOPs are
counted with torch's FlopCounterMode on one eager update; the fraction of peak divides by
the peak of the update's own precision and thread count (`assumed_peak`: on a CPU 95
GFLOP/s per core in fp32, twice that in bf16 where the CPU has native bf16 dot products),
or by REVERIE_PEAK_GFLOPS where set (a GPU, another machine); each row names its peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from reverie.accel import cpu_has_bf16, cpu_kind
from reverie.perf import tune_malloc

# the checkout, for tests/batches.py (random batches are test data, not in the package)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# fp32 peak of one core of the benchmark machines (190 GFLOP/s on 2 cores, measured with a
# 2048^3 matmul on both kinds); native bf16 dot products double it
CORE_FP32_GFLOPS = 95.0


def assumed_peak(
    device: torch.device, threads: int, precision: torch.dtype | None
) -> tuple[float, str]:
    """The GFLOP/s an update could reach on `device` at `threads` CPU threads and
    `precision`, and where the figure comes from (NaN on a GPU unless set)."""
    if "REVERIE_PEAK_GFLOPS" in os.environ:
        return float(os.environ["REVERIE_PEAK_GFLOPS"]), "REVERIE_PEAK_GFLOPS"
    if device.type != "cpu":
        return float("nan"), "unknown: set REVERIE_PEAK_GFLOPS"
    bf16 = precision == torch.bfloat16 and cpu_has_bf16()
    name = "bf16 (native dot products)" if bf16 else "fp32"
    return CORE_FP32_GFLOPS * threads * (2 if bf16 else 1), f"{threads} x {name} core peak"


def measure(
    size: str,
    kind: str,
    updates: int,
    threads: int,
    ratio: float,
    loop_s: float,
    overrides: list[str],
) -> dict:
    from reverie.agent import Agent
    from reverie.config import make_config
    from reverie.specs import ActSpec, ObsSpec
    from tests.batches import random_batch

    sys.path.insert(0, os.path.dirname(__file__))

    torch.set_num_threads(threads)
    tune_malloc()  # as the trainer does: large activations reuse heap pages
    cfg = make_config(overrides, size=size)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.run.device != "auto":
        device = torch.device(cfg.run.device)
    spec = ObsSpec({"vector": 4}, {}) if kind == "vector" else ObsSpec({}, {"image": (64, 64, 3)})
    act = ActSpec(True, 2)
    torch.manual_seed(0)
    agent = Agent(spec, act, cfg, device)
    batch = random_batch(cfg, spec, act, seed=0, ends=0.01)
    batch = {k: v.to(device) for k, v in batch.items()}

    def timed(fn) -> float:
        synchronize(device)
        t = time.perf_counter()
        fn()
        synchronize(device)
        return time.perf_counter() - t

    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    if agent.compiled:
        first_update_s = timed(lambda: agent.update(batch))  # compiles
        # FLOPs of the same update on the eager path (the counter does not see compiled code)
        eager_cfg = make_config([*overrides, "run.compile=off"], size=size)
        counted = Agent(spec, act, eager_cfg, device)
        with counter:
            counted.update(batch)
        del counted
    else:  # eager: count the warm-up update itself (no second model: 200m is large)
        with counter:
            first_update_s = timed(lambda: agent.update(batch))
    flops = counter.get_total_flops()

    times = [timed(lambda: agent.update(batch)) for _ in range(updates)]
    update_s = float(np.median(times))

    latency = {}
    for n in (1, 8):
        obs = {k: np.zeros((n, v), np.float32) for k, v in spec.vectors.items()}
        obs.update({k: np.zeros((n, *s), np.uint8) for k, s in spec.images.items()})
        obs["is_first"] = np.zeros(n, bool)
        _, state = agent.policy(obs, None)
        lat = []
        for _ in range(50):
            t = time.perf_counter()
            action, state = agent.policy(obs, state)
            action.cpu()  # the trainer hands the action to the env: include the copy
            lat.append(time.perf_counter() - t)
        latency[n] = float(np.median(lat)) * 1e3

    env_sps, loop_ups = (
        loop(cfg, size, kind, threads, ratio, loop_s, overrides)
        if loop_s > 0
        else (float("nan"), float("nan"))
    )
    peak, peak_source = assumed_peak(device, threads, agent.precision)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_dev = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0
    return {
        "size": size,
        "kind": kind,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else cpu_kind(),
        "threads": threads,
        "params_m": agent.param_count()["total"] / 1e6,
        "compiled": bool(agent.compiled),
        "precision": str(agent.precision or torch.float32).replace("torch.", ""),
        "first_update_s": first_update_s,
        "update_ms": update_s * 1e3,
        "updates_per_s": 1 / update_s,
        "gflop_per_update": flops / 1e9,
        "gflops": flops / 1e9 / update_s,
        "peak_gflops": peak,
        "peak_source": peak_source,
        "peak_fraction": flops / 1e9 / update_s / peak,
        "policy_ms_b1": latency[1],
        "policy_ms_b8": latency[8],
        "train_ratio": ratio,
        "loop_env_steps_per_s": env_sps,
        "loop_updates_per_s": loop_ups,
        "peak_host_mb": peak_mb,
        "peak_device_mb": peak_dev,
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loop(cfg, size: str, kind: str, threads: int, ratio: float, seconds: float, overrides):
    """Env steps/s and updates/s of the whole training loop, train ratio included."""
    from reverie.build import open_trainer
    from reverie.config import make_config

    with tempfile.TemporaryDirectory() as logdir:
        pixels = "true" if kind == "pixels" else "false"
        loop_cfg = make_config(
            [
                *overrides,
                f"env.pixels={pixels}",
                "run.progress=false",
                "run.tensorboard=false",
                "run.eval_every=0",
                f"run.threads={threads}",
                f"run.train_ratio={ratio}",
            ],
            size=size,
        )
        trainer = open_trainer(loop_cfg, logdir)
        start_steps = 64 + 2  # one batch must fit before updates start
        trainer.train(start_steps)
        t0, s0, u0 = time.perf_counter(), trainer.step, trainer.updates
        target = s0
        while time.perf_counter() - t0 < seconds:
            target += 16
            trainer.train(target)
        loop_time = time.perf_counter() - t0
        trainer.close()
    return (trainer.step - s0) / loop_time, (trainer.updates - u0) / loop_time


def ddp_rank(size: str, kind: str, updates: int, threads: int, overrides: list[str]) -> None:
    """One rank of a torchrun job: time `updates` data-parallel updates on this rank's share
    of the global batch; rank 0 prints the result."""
    import torch.distributed as dist

    from reverie.agent import Agent
    from reverie.config import make_config
    from reverie.distributed import Comm, local_batch, world_from_env
    from reverie.specs import ActSpec, ObsSpec
    from tests.batches import random_batch

    torch.set_num_threads(threads)
    tune_malloc()
    world = world_from_env()
    cfg = make_config(overrides, size=size)
    cuda = torch.cuda.is_available() and cfg.run.device != "cpu"
    device = torch.device("cuda", world.local_rank) if cuda else torch.device("cpu")
    comm = Comm.connect(world, device)
    spec = ObsSpec({"vector": 4}, {}) if kind == "vector" else ObsSpec({}, {"image": (64, 64, 3)})
    act = ActSpec(True, 2)
    torch.manual_seed(0)
    agent = Agent(spec, act, cfg, device, comm=comm)
    share = local_batch(cfg.run.batch_size, world)
    batch = random_batch(cfg, spec, act, seed=world.rank, ends=0.01)
    batch = {k: v[:share].to(device) for k, v in batch.items()}
    t = time.perf_counter()
    agent.update(batch)  # compiles, when compiled
    first_s = time.perf_counter() - t
    if world.active:
        dist.barrier()
    synchronize(device)
    t = time.perf_counter()
    for _ in range(updates):
        agent.update(batch)
    synchronize(device)
    seconds = time.perf_counter() - t
    if world.main:
        result = {"ranks": world.size, "threads": threads, "batch_per_rank": share}
        result.update(first_update_s=first_s, updates_per_s=updates / seconds)
        result.update(device=str(device.type), compiled=bool(agent.compiled))
        print("RESULT " + json.dumps(result), flush=True)
    comm.close()


def ddp_case(size: str, kind: str, ranks: int, threads: int, args) -> dict | None:
    cmd = [sys.executable]
    if ranks > 1:
        cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
    cmd += [__file__, "--ddp-rank", size, kind, "--updates", str(args.updates)]
    cmd += ["--threads", str(threads), *args.overrides]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        print(out.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(line[0][7:])


def ddp_scaling(args) -> list[dict]:
    """1 process of `threads` threads against N ranks of threads // N, in turns."""
    rows = []
    n = args.ddp
    per_rank = max(1, args.threads // n)
    for size in args.sizes:
        for kind in args.kinds:
            for turn in range(args.turns):
                one = ddp_case(size, kind, 1, args.threads, args)
                many = ddp_case(size, kind, n, per_rank, args)
                if one is None or many is None:
                    continue
                speedup = many["updates_per_s"] / one["updates_per_s"]
                if one["device"] == "cuda":
                    efficiency = speedup / n  # one GPU per rank
                else:
                    efficiency = speedup * args.threads / (n * per_rank)  # per core
                row = {"size": size, "kind": kind, "turn": turn + 1, "one": one, "ddp": many}
                row.update(speedup=speedup, efficiency=efficiency)
                rows.append(row)
                print(
                    f"{size} {kind} turn {turn + 1}: 1 process x {args.threads} threads "
                    f"{one['updates_per_s']:.2f} updates/s; {n} ranks x {per_rank} threads "
                    f"{many['updates_per_s']:.2f} updates/s; speed-up {speedup:.2f}, "
                    f"efficiency {efficiency:.2f} ({one['device']}, "
                    f"{'compiled' if one['compiled'] else 'eager'})",
                    flush=True,
                )
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", nargs="+", default=["1m", "12m"])
    p.add_argument("--kinds", nargs="+", default=["vector", "pixels"])
    p.add_argument("--updates", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-ratio", type=float, default=512)
    p.add_argument("--loop-seconds", type=float, default=20)
    p.add_argument("--json", help="write the results here too")
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # size kind: run in this process
    p.add_argument("--ddp", type=int, default=0, help="data-parallel ranks to measure")
    p.add_argument("--turns", type=int, default=2, help="--ddp: alternations of the two")
    p.add_argument("--ddp-rank", nargs=2, help=argparse.SUPPRESS)  # size kind: one rank
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()

    if args.ddp_rank:
        ddp_rank(*args.ddp_rank, args.updates, args.threads, args.overrides)
        return
    if args.ddp:
        rows = ddp_scaling(args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
        return
    if args.one:
        from reverie.errors import ReverieError

        try:
            result = measure(
                *args.one,
                args.updates,
                args.threads,
                args.train_ratio,
                args.loop_seconds,
                args.overrides,
            )
        except ReverieError as e:  # a refused setting: one line, as reverie's CLI says it
            sys.exit(f"{' '.join(args.one)}: {e}")
        print("RESULT " + json.dumps(result))
        return

    print(f"machine: {cpu_kind()}; torch {torch.__version__}", flush=True)
    results = []
    for size in args.sizes:
        for kind in args.kinds:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                size,
                kind,
                "--updates",
                str(args.updates),
                "--threads",
                str(args.threads),
                "--train-ratio",
                str(args.train_ratio),
                "--loop-seconds",
                str(args.loop_seconds),
                *args.overrides,
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            results.append(json.loads(line[0][7:]))
            print_row(results[-1], header=len(results) == 1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def print_row(r: dict, header: bool) -> None:
    cols = [
        ("size", "{:>5}"),
        ("kind", "{:>7}"),
        ("params_m", "{:>8.2f}"),
        ("compiled", "{!s:>8}"),
        ("precision", "{:>9}"),
        ("first_update_s", "{:>14.1f}"),
        ("updates_per_s", "{:>13.2f}"),
        ("update_ms", "{:>9.0f}"),
        ("gflop_per_update", "{:>16.1f}"),
        ("gflops", "{:>6.1f}"),
        ("peak_gflops", "{:>11.0f}"),
        ("peak_fraction", "{:>13.2f}"),
        ("loop_env_steps_per_s", "{:>20.1f}"),
        ("loop_updates_per_s", "{:>18.2f}"),
        ("policy_ms_b1", "{:>12.2f}"),
        ("policy_ms_b8", "{:>12.2f}"),
        ("peak_host_mb", "{:>12.0f}"),
        ("peak_device_mb", "{:>14.0f}"),
    ]
    if header:
        print(" ".join(f"{name:>{len(fmt.format(r[name]))}}" for name, fmt in cols))
    print(" ".join(fmt.format(r[name]) for name, fmt in cols), flush=True)


if __name__ == "__main__":
    main()
