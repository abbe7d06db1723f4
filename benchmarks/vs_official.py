"""Learning comparison against the official DreamerV3 code (danijar/dreamerv3, JAX).

Runs `reverie train` and, given a checkout of the official code and a Python that can run it,
the official `dreamerv3/main.py` on the same Gymnasium task, model size, train ratio, batch,
env count and seeds, one process at a time, each for `--steps` env steps or `--minutes` of
wall time, whichever comes first. Then it reads both sides' metrics.jsonl and writes to
`--out`: returns.png (return against env steps and against updates: median line and min-max
band over seeds per code), losses.png (loss terms against updates), series.json (the raw
series) and table.md (per seed: final return, best mean of 10 episodes, env steps, updates,
updates/s).

    python benchmarks/vs_official.py --steps 20000 --seeds 0 1 2 --out results/vs \\
        --official /path/to/dreamerv3 --official-python /path/to/venv/bin/python
    python benchmarks/vs_official.py --plot-only --out results/vs   # re-plot series.json

The official `gym_` suite imports the old `gym` API (reset() -> obs, step() -> 4-tuple).
This script writes a small stand-in `gym` package over Gymnasium into each official run's
folder and puts it on that process's PYTHONPATH; nothing is installed. The official side
runs JAX on CPU in float32 (`--jax.platform cpu --jax.compute_dtype float32`) unless
`--official-args` says otherwise. The official Python needs jax, the official
requirements and gymnasium.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The `gym` stand-in written into each official run's folder (see module docstring).
GYM_SHIM = '''"""Old-gym-API stand-in over Gymnasium, written by reverie's vs_official.py."""

import os

import gymnasium
import numpy as np
from gymnasium import spaces  # noqa: F401  (from_gym uses gym.spaces.Dict)

__version__ = "0.0-shim"
_count = [0]


class _OldAPI:
    """reset() -> obs and step() -> (obs, reward, done, info), info['is_terminal']."""

    def __init__(self, env, seed):
        self._env = env
        self._seed = seed
        self.observation_space = env.observation_space
        self.action_space = env.action_space

    def reset(self):
        seed, self._seed = self._seed, None  # seed the first reset only
        obs, _ = self._env.reset(seed=seed)
        return obs

    def step(self, action):
        if isinstance(self.action_space, spaces.Discrete):
            action = int(np.asarray(action))
        obs, reward, terminated, truncated, info = self._env.step(action)
        info = dict(info)
        info["is_terminal"] = bool(terminated)
        return obs, float(reward), bool(terminated or truncated), info

    def render(self, mode="rgb_array"):
        return self._env.render()

    def close(self):
        self._env.close()

    def __getattr__(self, name):
        return getattr(self._env, name)


def make(env_id, **kwargs):
    base = os.environ.get("GYM_SHIM_SEED")
    seed = None if base is None else int(base) * 1000 + _count[0]
    _count[0] += 1
    return _OldAPI(gymnasium.make(env_id, **kwargs), seed)
'''

# canonical name -> (reverie metric key, official metric key); "dec*"/"obs*": the sum of
# the decoder terms of all observation keys. The official train/* values are means over
# the log interval (train/opt/updates too, so it lags the true count by half an interval).
LOSSES = {
    "decoder": ("dec*", "obs*"),
    "reward": ("loss/rew", "train/loss/rew"),
    "continue": ("loss/con", "train/loss/con"),
    "dyn": ("loss/dyn", "train/loss/dyn"),
    "rep": ("loss/rep", "train/loss/rep"),
    "value (critic)": ("loss/critic", "train/loss/value"),
    "repval": ("loss/repval", "train/loss/repval"),
    "policy (actor)": ("loss/actor", "train/loss/policy"),
    "policy entropy": ("actor/entropy", "train/ent/action"),
    # the official code logs no return-normaliser state (train/ret is the normalised return)
    "return scale": ("retnorm/scale", None),
}
OFFICIAL_NON_DECODER = {"rew", "con", "dyn", "rep", "policy", "value", "repval"}
CODES = ("reverie", "official")
COLORS = {"reverie": "tab:blue", "official": "tab:orange"}


# ------------------------------------------------------------------ launching runs


def reverie_command(args, seed: int, logdir: Path) -> list[str]:
    exe = ROOT / ".venv" / "bin" / "reverie"
    cmd = [str(exe) if exe.exists() else "reverie", "train"]
    cmd += ["--env", args.env, "--logdir", str(logdir), "--seed", str(seed)]
    cmd += ["--steps", str(args.steps), "--size", args.size, "--envs", str(args.envs)]
    cmd += ["--train-ratio", str(args.train_ratio)]
    cmd += [f"run.batch_size={args.batch_size}", f"run.batch_length={args.batch_length}"]
    cmd += [f"run.log_every={args.log_every}", "run.progress=false", "run.eval_every=0"]
    return cmd + shlex.split(args.reverie_args)


def official_task(env: str) -> str:
    suite, name = env.split(":", 1) if ":" in env else ("gym", env)
    if suite != "gym":
        raise SystemExit(f"vs_official: only gym: envs are mapped to the official code, not {env}")
    return f"gym_{name}"


def official_command(args, seed: int, logdir: Path) -> list[str]:
    main = Path(args.official) / "dreamerv3" / "main.py"
    cmd = [args.official_python, "-u", str(main)]
    cmd += ["--configs", f"size{args.size}", "--task", official_task(args.env)]
    cmd += ["--seed", str(seed), "--logdir", str(logdir)]
    cmd += ["--run.train_ratio", str(args.train_ratio), "--run.envs", str(args.envs)]
    cmd += ["--run.steps", str(args.steps), "--run.log_every", str(args.log_every)]
    cmd += ["--batch_size", str(args.batch_size), "--batch_length", str(args.batch_length)]
    # reports and checkpoints off (reverie's eval is off too), CPU float32, jsonl logs only
    cmd += ["--run.report_every", "0", "--run.save_every", "0"]
    cmd += ["--jax.platform", "cpu", "--jax.compute_dtype", "float32"]
    cmd += ["--jax.prealloc", "False", "--logger.outputs", "jsonl"]
    cmd += ["--run.usage.nvsmi", "False"]
    return cmd + shlex.split(args.official_args)


def run_one(code: str, args, seed: int) -> dict:
    """Launch one run, tail its metrics.jsonl (stamping each line with the wall time it
    appeared, since the official lines carry none) and stop it at the wall budget."""
    folder = Path(args.logroot) / f"{code}-seed{seed}"
    shutil.rmtree(folder, ignore_errors=True)  # both codes resume from a logdir: start anew
    folder.mkdir(parents=True)
    logdir = folder / "logdir"
    env = dict(os.environ)
    if code == "reverie":
        cmd = reverie_command(args, seed, logdir)
    else:
        shim = folder / "shim" / "gym"
        shim.mkdir(parents=True)
        (shim / "__init__.py").write_text(GYM_SHIM)
        paths = [str(shim.parent), str(args.official)]
        env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(":")
        env["GYM_SHIM_SEED"] = str(seed)
        env["JAX_PLATFORMS"] = "cpu"
        cmd = official_command(args, seed, logdir)
    if args.nice:
        cmd = ["nice", "-n", str(args.nice), *cmd]
    print("$", shlex.join(cmd), flush=True)
    metrics = logdir / "metrics.jsonl"
    lines: list[dict] = []
    offset, stopped = 0, False
    t0 = time.time()
    with open(folder / "output.log", "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        while True:
            done = proc.poll() is not None
            offset = _tail(metrics, offset, lines, time.time() - t0)
            if done:
                break
            if not stopped and time.time() - t0 > args.minutes * 60:
                stopped = True
                os.killpg(proc.pid, signal.SIGINT)  # our child's own process group
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(1.0)
    wall = time.time() - t0
    print(f"  {code} seed {seed}: exit {proc.returncode}, {wall:.0f}s, {len(lines)} lines")
    run = parse_run(code, lines, args.batch_size * args.batch_length)
    run.update(seed=seed, wall=wall, exit=proc.returncode, budget_hit=stopped)
    run["command"] = shlex.join(cmd)
    return run


def _tail(path: Path, offset: int, lines: list[dict], wall: float) -> int:
    if not path.exists():
        return offset
    with open(path) as f:
        f.seek(offset)
        text = f.read()
    end = text.rfind("\n") + 1  # only whole lines
    for raw in text[:end].splitlines():
        if raw.strip():
            item = json.loads(raw)
            item["_wall"] = wall
            lines.append(item)
    return offset + len(text[:end].encode())


# ------------------------------------------------------------------ reading logs


def parse_run(code: str, lines: list[dict], batch_steps: int) -> dict:
    """Episodes [(env step, return)] and train points (env step, updates, wall, losses)."""
    ret_key = "episode/return" if code == "reverie" else "episode/score"
    upd_key = "train/updates" if code == "reverie" else "train/opt/updates"
    episodes, train = [], []
    for x in lines:
        if x.get(ret_key) is not None:
            episodes.append([int(x["step"]), float(x[ret_key])])
        if x.get(upd_key) is not None:
            # arrival time of the line: the same clock for both codes
            point = {"step": int(x["step"]), "updates": float(x[upd_key]), "wall": x["_wall"]}
            if code == "reverie" and x.get("fps/updates") is not None:
                point["updates_per_s"] = float(x["fps/updates"])
            if code == "official" and x.get("fps/train") is not None:
                point["updates_per_s"] = float(x["fps/train"]) / batch_steps
            point.update(_losses(code, x))
            train.append(point)
    keys = sorted({k for x in lines for k in x if not k.startswith("_")})
    return {"episodes": episodes, "train": train, "keys": keys}


def _losses(code: str, x: dict) -> dict:
    out = {}
    for name, (rkey, okey) in LOSSES.items():
        key = rkey if code == "reverie" else okey
        if key is None:
            terms = []
        elif key == "dec*":
            terms = [v for k, v in x.items() if k.startswith("loss/dec_") and v is not None]
        elif key == "obs*":
            terms = [
                v
                for k, v in x.items()
                if k.startswith("train/loss/")
                and k.split("/", 2)[2] not in OFFICIAL_NON_DECODER
                and v is not None
            ]
        else:
            terms = [x[key]] if x.get(key) is not None else []
        if terms:
            out[name] = float(sum(terms))
    return out


def summarize(run: dict, window: int = 10) -> dict:
    rets = [r for _, r in run["episodes"]]
    means = [sum(rets[i - window : i]) / window for i in range(window, len(rets) + 1)]
    train = run["train"]
    steps = max([s for s, _ in run["episodes"]] + [p["step"] for p in train] + [0])
    updates = max([p["updates"] for p in train] + [0])
    rate = env_rate = float("nan")
    timed = [p for p in train if p["updates"] > 0]
    if len(timed) >= 2 and timed[-1]["wall"] > timed[0]["wall"]:
        # steady rates between the first and last logged lines that had trained
        span = timed[-1]["wall"] - timed[0]["wall"]
        rate = (timed[-1]["updates"] - timed[0]["updates"]) / span
        env_rate = (timed[-1]["step"] - timed[0]["step"]) / span
    logged = [p["updates_per_s"] for p in timed[1:] if p.get("updates_per_s")]
    return {
        "episodes": len(rets),
        "final_return": sum(rets[-window:]) / len(rets[-window:]) if rets else float("nan"),
        "best_mean10": max(means) if means else float("nan"),
        "env_steps": steps,
        "updates": updates,
        "updates_per_s": rate,
        "env_steps_per_s": env_rate,
        "logged_updates_per_s": sum(logged) / len(logged) if logged else float("nan"),
        "wall": run.get("wall", float("nan")),
    }


# ------------------------------------------------------------------ outputs


def _updates_at(run: dict, steps):
    import numpy as np

    train = run["train"]
    if not train:
        return np.full(len(steps), np.nan)
    xs = [0] + [p["step"] for p in train]
    ys = [0] + [p["updates"] for p in train]
    return np.interp(steps, xs, ys, right=np.nan)


def _band(ax, runs: list[tuple], color: str, label: str, points: int = 200) -> None:
    """Median line and min-max band over runs, each a (x, y) pair of sorted arrays."""
    import numpy as np

    runs = [(x, y) for x, y in runs if len(x)]
    if not runs:
        return
    hi = max(x[-1] for x, _ in runs)
    lo = min(x[0] for x, _ in runs)
    grid = np.linspace(lo, hi, points)
    ys = _on_grid(runs, grid)
    ok = np.isfinite(ys).any(0)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med, mn, mx = np.nanmedian(ys, 0), np.nanmin(ys, 0), np.nanmax(ys, 0)
    ax.plot(grid[ok], med[ok], color=color, label=f"{label} (n={len(runs)})")
    ax.fill_between(grid[ok], mn[ok], mx[ok], color=color, alpha=0.2)


def _on_grid(runs: list[tuple], grid):
    """(runs, points) values of each (x, y) run on `grid`, NaN outside the run's range."""
    import numpy as np

    return np.stack([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in runs])


def _inside(first: list, second: list, grid) -> tuple:
    """Fractions of `grid` where the median of `first` lies inside, above and below the
    min-max band of `second`, and the largest distance outside it."""
    import numpy as np

    med = np.median(_on_grid(first, grid), 0)
    band = _on_grid(second, grid)
    lo, hi = band.min(0), band.max(0)
    above, below = (med > hi).mean(), (med < lo).mean()
    gap = float(np.max(np.maximum(med - hi, lo - med).clip(min=0)))
    return 1 - above - below, above, below, gap


def band_check(data: dict, smooth: int = 5, points: int = 200) -> str:
    """Where reverie's median return curve (against env steps) lies relative to the
    official runs' min-max band, on the env steps that all runs of both codes cover; and,
    as the yardstick for seed noise, the same figure for every other split of the pooled
    runs into groups of those sizes (a run of either code is as likely in either group if
    the two codes learn alike)."""
    import itertools

    import numpy as np

    curves = {}
    for code in CODES:
        curves[code] = [
            (
                np.array([s for s, _ in run["episodes"]], float),
                _smooth([r for _, r in run["episodes"]], smooth),
            )
            for run in data["runs"].get(code, {}).values()
            if len(run["episodes"]) > 1
        ]
    if not curves["reverie"] or len(curves["official"]) < 2:
        return "band check: needs reverie runs and at least 2 official runs"
    pooled = curves["reverie"] + curves["official"]
    grid = np.linspace(max(x[0] for x, _ in pooled), min(x[-1] for x, _ in pooled), points)
    inside, above, below, gap = _inside(curves["reverie"], curves["official"], grid)
    n = len(curves["reverie"])
    splits = []
    for pick in itertools.combinations(range(len(pooled)), n):
        if pick == tuple(range(n)):
            continue  # the actual split
        first = [pooled[i] for i in pick]
        second = [pooled[i] for i in range(len(pooled)) if i not in pick]
        splits.append(_inside(first, second, grid)[0])
    text = (
        f"band check (env steps {grid[0]:.0f}-{grid[-1]:.0f}, {points} points, returns "
        f"smoothed over {smooth} episodes): reverie's median (n={n}) inside the official "
        f"min-max band (n={len(curves['official'])}) at {inside:.0%} of points, above at "
        f"{above:.0%}, below at {below:.0%}; largest distance outside the band {gap:.1f}."
    )
    if splits:
        share = np.mean(np.array(splits) <= inside)
        text += (
            f" Seed-noise yardstick: over the {len(splits)} other splits of the pooled runs "
            f"the median's share inside is {np.median(splits):.0%} (range "
            f"{min(splits):.0%}-{max(splits):.0%}); {share:.0%} of splits are at or below "
            f"the actual {inside:.0%}."
        )
    return text


def _smooth(values, k: int):
    import numpy as np

    values = np.asarray(values, float)
    if k <= 1 or len(values) < 2:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    out = np.empty(len(values))
    for i in range(len(values)):
        j = max(0, i + 1 - k)
        out[i] = (c[i + 1] - c[j]) / (i + 1 - j)
    return out


def write_outputs(data: dict, out: Path, smooth: int = 5) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    meta = data.get("config", {})
    title = f"{meta.get('env', '')} size {meta.get('size', '')} ratio {meta.get('train_ratio', '')}"

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for code in CODES:
        runs = data["runs"].get(code, {})
        by_step, by_upd = [], []
        for run in runs.values():
            if not run["episodes"]:
                continue
            st = np.array([s for s, _ in run["episodes"]], float)
            rt = _smooth([r for _, r in run["episodes"]], smooth)
            by_step.append((st, rt))
            up = _updates_at(run, st)
            ok = np.isfinite(up)
            by_upd.append((up[ok], rt[ok]))
        _band(axes[0], by_step, COLORS[code], code)
        _band(axes[1], by_upd, COLORS[code], code)
    axes[0].set_xlabel("env steps")
    axes[1].set_xlabel("updates")
    for ax in axes:
        ax.set_ylabel(f"episode return (mean of last {smooth})")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"return: {title}")
    fig.tight_layout()
    fig.savefig(out / "returns.png", dpi=100)
    plt.close(fig)

    names = list(LOSSES)
    cols = 5
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for code in CODES:
            series = []
            for run in data["runs"].get(code, {}).values():
                pts = [(p["updates"], p[name]) for p in run["train"] if name in p]
                if pts:
                    pts.sort()
                    series.append((np.array([u for u, _ in pts]), np.array([v for _, v in pts])))
            _band(ax, series, COLORS[code], code)
        ax.set_title(name)
        ax.set_xlabel("updates")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(f"losses: {title}")
    fig.tight_layout()
    fig.savefig(out / "losses.png", dpi=100)
    plt.close(fig)

    rows_md = [
        "| code | seed | final return (last 10) | best mean of 10 | episodes | env steps "
        "| updates | updates/s | env steps/s | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for code in CODES:
        for seed, run in sorted(data["runs"].get(code, {}).items(), key=lambda x: int(x[0])):
            s = summarize(run)
            rows_md.append(
                f"| {code} | {seed} | {s['final_return']:.1f} | {s['best_mean10']:.1f} "
                f"| {s['episodes']} | {s['env_steps']} | {s['updates']:.0f} "
                f"| {s['updates_per_s']:.2f} | {s['env_steps_per_s']:.2f} | {s['wall']:.0f} |"
            )
    text = f"# {title}\n\n" + "\n".join(rows_md) + "\n"
    text += (
        "\nupdates/s and env steps/s: the rates between the first and last logged train lines "
        "after training began (compilation excluded), acting and env steps included; the "
        "official side runs JAX on CPU in float32.\n"
    )
    text += "\n" + band_check(data, smooth) + "\n"
    (out / "table.md").write_text(text)
    print(text)
    print(f"wrote {out / 'returns.png'}, {out / 'losses.png'}, {out / 'table.md'}")


# ------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Learning comparison: reverie vs the official DreamerV3 code.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--env", default="gym:CartPole-v1", help="reverie env id (gym: only)")
    p.add_argument("--size", default="1m", help="size preset: 1m 12m 25m 50m 100m 200m 400m")
    p.add_argument("--train-ratio", type=float, default=512)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batch-length", type=int, default=64)
    p.add_argument("--envs", type=int, default=1)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=20000, help="env steps per run")
    p.add_argument("--minutes", type=float, default=60, help="wall-clock budget per run")
    p.add_argument("--log-every", type=float, default=30, help="seconds between train lines")
    p.add_argument("--codes", nargs="+", choices=CODES, default=list(CODES))
    p.add_argument("--official", help="checkout of danijar/dreamerv3 (holds dreamerv3/main.py)")
    p.add_argument("--official-python", help="Python with jax and the official requirements")
    p.add_argument("--reverie-args", default="", help="extra args for `reverie train`")
    p.add_argument("--official-args", default="", help="extra flags for dreamerv3/main.py")
    p.add_argument("--nice", type=int, default=0, help="run each training under nice -n N")
    p.add_argument("--logroot", default="logs/vs_official", help="where the runs go")
    p.add_argument("--out", required=True, help="folder for the plots, table and series.json")
    p.add_argument("--smooth", type=int, default=5, help="episodes in the return average")
    p.add_argument(
        "--plot-only", action="store_true", help="re-plot OUT/series.json without running"
    )
    p.add_argument(
        "--reverie-runs",
        nargs="+",
        metavar="DIR",
        help="take the reverie side from finished runs instead of training (each DIR holds "
        "config.yaml and metrics.jsonl, e.g. a learning.py --out seed folder); their "
        "setup must match --env, --train-ratio, --batch-size, --batch-length and --envs",
    )
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="SERIES",
        help="combine the runs of several series.json (e.g. one invocation per code or seed; "
        "later files win for the same code and seed) into OUT/series.json and plot it",
    )
    return p


def merge_series(paths: list[str]) -> dict:
    """One series from several invocations' series.json; they must share the task setup."""
    merged: dict = {"config": None, "runs": {c: {} for c in CODES}}
    same = ("env", "size", "train_ratio", "batch_size", "batch_length", "envs")
    for path in paths:
        data = json.loads(Path(path).read_text())
        config = data["config"]
        if merged["config"] is None:
            merged["config"] = dict(config, seeds=[])
        elif any(config[k] != merged["config"][k] for k in same):
            raise SystemExit(f"vs_official: {path} has another setup than {paths[0]}")
        for code, runs in data["runs"].items():
            merged["runs"][code].update(runs)
    merged["config"]["seeds"] = sorted({int(s) for runs in merged["runs"].values() for s in runs})
    return merged


def read_reverie_run(folder: Path, args) -> tuple[int, dict]:
    """(seed, run) from a finished reverie run's config.yaml and metrics.jsonl; the wall
    clock counts from its run.json's launch time when there is one, else its first line."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(folder / "config.yaml")
    mine = (cfg.env.id, cfg.run.train_ratio, cfg.run.batch_size, cfg.run.batch_length)
    wanted = (args.env, args.train_ratio, args.batch_size, args.batch_length)
    if mine != wanted or cfg.env.num_envs != args.envs:
        raise SystemExit(
            f"vs_official: {folder} ran env, ratio, batch, length, envs = "
            f"{(*mine, cfg.env.num_envs)}, not the {(*wanted, args.envs)} asked for"
        )
    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines() if x]
    info = folder / "run.json"
    t0 = json.loads(info.read_text())["launched"] if info.exists() else lines[0]["time"]
    for x in lines:
        x["_wall"] = x["time"] - t0
    run = parse_run("reverie", lines, args.batch_size * args.batch_length)
    run.update(seed=int(cfg.seed), wall=lines[-1]["_wall"], exit=0, budget_hit=False)
    run["command"] = f"read from {folder}"
    return int(cfg.seed), run


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if args.merge:
        data = merge_series(args.merge)
        out.mkdir(parents=True, exist_ok=True)
        (out / "series.json").write_text(json.dumps(data))
        write_outputs(data, out, args.smooth)
        return 0
    if args.plot_only:
        write_outputs(json.loads((out / "series.json").read_text()), out, args.smooth)
        return 0
    codes = list(args.codes)
    if "official" in codes and not (args.official and args.official_python):
        if args.codes != list(CODES):
            raise SystemExit("vs_official: --official and --official-python are needed")
        print("vs_official: no --official/--official-python given: reverie only")
        codes.remove("official")
    if "official" in codes:
        official_task(args.env)  # fail early on an unmapped env
    config = {
        k: getattr(args, k)
        for k in ("env", "size", "train_ratio", "batch_size", "batch_length", "envs", "steps")
    }
    config.update(minutes=args.minutes, official=args.official, seeds=args.seeds)
    series_path = out / "series.json"
    data = {"config": config, "runs": {c: {} for c in CODES}}
    out.mkdir(parents=True, exist_ok=True)
    if args.reverie_runs:
        for folder in args.reverie_runs:
            seed, run = read_reverie_run(Path(folder), args)
            run["summary"] = summarize(run)
            data["runs"]["reverie"][str(seed)] = run
        codes = [c for c in codes if c != "reverie"]
        read = {int(s) for s in data["runs"]["reverie"]}
        config["seeds"] = sorted(read | set(args.seeds if codes else []))
        series_path.write_text(json.dumps(data))
    for seed in args.seeds:
        for code in codes:  # one process at a time
            run = run_one(code, args, seed)
            run["summary"] = summarize(run)
            data["runs"][code][str(seed)] = run
            series_path.write_text(json.dumps(data))  # kept after each run
    write_outputs(data, out, args.smooth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
