"""How much reverie's fast DMC render path changes the frames the agent sees.

For each task, the env is built twice the way the trainer builds it (`preset=dmc_vision`:
64x64 frames of camera 0, quadruped camera 2, through reverie.envs.make_env), once with
`env.kwargs.fast_render=true` (no multisampling, shadows or reflections) and once with
`false` (MuJoCo's defaults), reset with the same seed and stepped with the same random
actions. The physics state and reward are asserted equal after every step, so any
difference between the two frames is rendering alone. Per task it reports, on the
0-255 scale over every pixel and channel of every frame: the mean, 99th percentile and
max of |fast - default|, the fractions differing by more than 8 and 32 levels, the
signed mean (fast - default: > 0 means fast frames are brighter), and the share of the
absolute difference on edge pixels (a 1-pixel neighbour in the default frame differs by
more than 32 levels). Yardsticks for scale, on the default path: the mean |difference|
between consecutive frames (how much one env step changes a frame) and between a frame
and itself shifted by one pixel. Speed: env steps/s of each path (physics + render) and
ms per render alone.

    MUJOCO_GL=egl python benchmarks/dmc_render_check.py [--steps 500] [--seed 0] \\
        [--tasks cartpole_swingup walker_walk ...] [--out benchmarks/results]

Writes dmc_render_check.{json,md,png} to --out (the PNG: fast frame, default frame and
the absolute difference amplified x4 for a few tasks). MUJOCO_GL left unset picks EGL,
else OSMesa (reverie.envs.dmc_suite.ensure_mujoco_gl); on a machine without a GPU both
render in software (Mesa llvmpipe), which is where the fast path pays.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from reverie.accel import cpu_kind
from reverie.config import make_config
from reverie.envs import env_kwargs, make_env
from reverie.envs.dmc_suite import CAMERAS, ensure_mujoco_gl, split_task

TASKS = [
    "cartpole_swingup",
    "walker_walk",
    "cheetah_run",
    "reacher_easy",
    "finger_spin",
    "quadruped_run",
    "ball_in_cup_catch",
]
PICTURED = ["walker_walk", "cheetah_run", "quadruped_run", "finger_spin"]
AMPLIFY = 4  # the PNG's difference column is |fast - default| x AMPLIFY, clipped to 255
RENDER_REPS = 50  # renders timed alone, per path
ABLATE_EVERY = 10  # every 10th state is also rendered with one of the fast path's changes
# the default env's renders with some of the fast path's flags; MSAA is fixed per env
ABLATIONS = {
    "rerender": {},  # no change: checks that rendering a state twice gives the same frame
    "no_shadow": {"shadow": False},
    "no_reflection": {"reflection": False},
    "no_shadow_no_reflection": {"shadow": False, "reflection": False},
}


def build(task: str, fast: bool, seed: int):
    """The env as the trainer builds it under preset=dmc_vision."""
    cfg = make_config([f"env.id=dmc:{task}", "preset=dmc_vision", f"env.kwargs.fast_render={fast}"])
    return make_env(str(cfg.env.id), seed=seed, **env_kwargs(cfg.env))


def gl_renderer() -> str:
    """The OpenGL renderer string (needs a current context: call after a render)."""
    try:
        import OpenGL.GL as gl

        return " / ".join(
            gl.glGetString(x).decode() for x in (gl.GL_RENDERER, gl.GL_VERSION) if gl.glGetString(x)
        )
    except Exception as e:  # noqa: BLE001 - informational only
        return f"unknown ({type(e).__name__})"


def physics_state(env) -> np.ndarray:
    inner = env.unwrapped.env  # DmEnvToGym -> the dm_control environment
    return np.concatenate([[inner.physics.data.time], inner.physics.get_state()])


def render_with(env, task: str, flags: dict) -> np.ndarray:
    """The env's current state rendered as make_dmc does, with render flags overridden."""
    size = env.observation_space["image"].shape[0]
    camera = CAMERAS.get(split_task(task)[0], 0)
    physics = env.unwrapped.env.physics
    return physics.render(size, size, camera_id=camera, render_flag_overrides=flags)


def rollout(task: str, steps: int, seed: int) -> dict:
    """Both paths in lockstep; returns the frames and timings of each, and every
    ABLATE_EVERY-th state of the default env rendered with each of ABLATIONS."""
    envs = {"fast": build(task, True, seed), "default": build(task, False, seed)}
    ablated: dict[str, list] = {k: [] for k in ABLATIONS}
    ablated_at: list[int] = []
    try:
        frames = {k: [env.reset(seed=seed)[0]["image"]] for k, env in envs.items()}
        np.testing.assert_array_equal(
            physics_state(envs["fast"]), physics_state(envs["default"]), err_msg="reset"
        )
        act_space = envs["fast"].action_space
        rng = np.random.default_rng(seed)
        step_s = dict.fromkeys(envs, 0.0)
        for t in range(steps):
            action = rng.uniform(act_space.low, act_space.high).astype(act_space.dtype)
            out = {}
            for k, env in envs.items():
                start = time.perf_counter()
                out[k] = env.step(action)
                step_s[k] += time.perf_counter() - start
                frames[k].append(out[k][0]["image"])
            np.testing.assert_array_equal(
                physics_state(envs["fast"]), physics_state(envs["default"]), err_msg=f"step {t}"
            )
            assert out["fast"][1:4] == out["default"][1:4], (t, out["fast"][1:4])
            if t % ABLATE_EVERY == 0:
                ablated_at.append(len(frames["default"]) - 1)
                for k, flags in ABLATIONS.items():
                    ablated[k].append(render_with(envs["default"], task, flags))
            if out["fast"][2] or out["fast"][3]:
                for k, env in envs.items():
                    frames[k].append(env.reset()[0]["image"])
        render_ms = {}
        for k, env in envs.items():
            inner = env.unwrapped
            start = time.perf_counter()
            for _ in range(RENDER_REPS):
                inner.render()
            render_ms[k] = (time.perf_counter() - start) / RENDER_REPS * 1e3
        renderer = gl_renderer()
    finally:
        for env in envs.values():
            env.close()
    return {
        "frames": {k: np.stack(v) for k, v in frames.items()},
        "steps_per_s": {k: steps / s for k, s in step_s.items()},
        "render_ms": render_ms,
        "renderer": renderer,
        "ablated": {k: np.stack(v) for k, v in ablated.items()},
        "ablated_at": np.asarray(ablated_at),
    }


def compare(fast: np.ndarray, default: np.ndarray) -> dict:
    """Pixel statistics of two (T, H, W, 3) uint8 frame stacks, 0-255 scale."""
    f, d = fast.astype(np.int16), default.astype(np.int16)
    diff = np.abs(f - d)
    # edge pixels of the default frame: a right or lower neighbour differs by > 32 levels
    grad = np.zeros(d.shape[:3], np.int16)
    grad[:, :, :-1] = np.abs(d[:, :, 1:] - d[:, :, :-1]).max(-1)
    grad[:, :-1, :] = np.maximum(grad[:, :-1, :], np.abs(d[:, 1:] - d[:, :-1]).max(-1))
    edge = grad > 32
    mass = diff.sum(-1)
    return {
        "mad": float(diff.mean()),
        "p99": float(np.percentile(diff, 99)),
        "max": int(diff.max()),
        "frac_gt8": float((diff > 8).mean()),
        "frac_gt32": float((diff > 32).mean()),
        "signed_mean": float((f - d).mean()),
        "edge_pixel_frac": float(edge.mean()),
        "diff_share_on_edges": float(mass[edge].sum() / max(mass.sum(), 1)),
        # yardsticks, default path
        "consecutive_mad": float(np.abs(d[1:] - d[:-1]).mean()),
        "shift1_mad": float(np.abs(d[:, :, 1:] - d[:, :, :-1]).mean()),
        "consecutive_mad_fast": float(np.abs(f[1:] - f[:-1]).mean()),
    }


def attribute(run: dict) -> dict:
    """Mean |diff| of the default frame against the default env rendered with shadows off,
    reflections off, and both off; and of the fast frame against both off (which leaves
    the multisampling alone), on every ABLATE_EVERY-th state."""
    idx = run["ablated_at"]
    default = run["frames"]["default"][idx].astype(np.int16)
    fast = run["frames"]["fast"][idx].astype(np.int16)
    out = {k: float(np.abs(default - v.astype(np.int16)).mean()) for k, v in run["ablated"].items()}
    both = run["ablated"]["no_shadow_no_reflection"].astype(np.int16)
    out["no_msaa_only"] = float(np.abs(fast - both).mean())
    out["all_three"] = float(np.abs(fast - default).mean())
    out["states"] = len(idx)
    return out


def picture(samples: dict[str, tuple[np.ndarray, np.ndarray]], step: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(samples)
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.6 * rows), squeeze=False)
    for row, (task, (fast, default)) in enumerate(samples.items()):
        diff = np.abs(fast.astype(np.int16) - default.astype(np.int16))
        amp = np.clip(diff * AMPLIFY, 0, 255).astype(np.uint8)
        titles = ["fast_render=true", "fast_render=false", f"|diff| x{AMPLIFY}"]
        for col, (img, title) in enumerate(zip((fast, default, amp), titles, strict=True)):
            ax = axes[row, col]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title if row == 0 else "", fontsize=9)
        axes[row, 0].set_ylabel(task, fontsize=9)
    fig.suptitle(
        f"DMC 64x64 frames as the agent gets them, same physics state (after step {step})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict) -> str:
    lines = [
        "# DMC fast render path vs MuJoCo's defaults",
        "",
        "Generated by `benchmarks/dmc_render_check.py`; do not edit.",
        "",
        f"- date: {result['date']}",
        f"- command: `{result['command']}`",
        f"- machine: {result['machine']}",
        f"- MUJOCO_GL={result['mujoco_gl']}; OpenGL: {result['renderer']}",
        f"- {result['steps']} random-action steps per task (seed {result['seed']}), 64x64 RGB;"
        " physics state and reward asserted identical after every step",
        "",
        "## Pixel difference, fast - default (0-255 scale, all pixels and channels)",
        "",
        "| task | camera | mean abs | p99 | max | > 8 | > 32 | signed mean "
        "| share on edges (edge px) | yardstick: consecutive frames | yardstick: 1-px shift |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, r in result["tasks"].items():
        lines.append(
            f"| {task} | {r['camera']} | {r['mad']:.2f} | {r['p99']:.0f} | {r['max']} "
            f"| {100 * r['frac_gt8']:.2f}% | {100 * r['frac_gt32']:.2f}% "
            f"| {r['signed_mean']:+.2f} | {100 * r['diff_share_on_edges']:.0f}% "
            f"({100 * r['edge_pixel_frac']:.0f}%) | {r['consecutive_mad']:.2f} "
            f"| {r['shift1_mad']:.2f} |"
        )
    lines += [
        "",
        "Yardsticks, on the default path: mean |frame(t+1) - frame(t)| over the run, and "
        "mean |frame - frame shifted 1 pixel right|. Share on edges: fraction of the "
        "summed |diff| on pixels where a neighbour in the default frame differs by more "
        "than 32 levels (in brackets: how many pixels those are).",
        "",
        "## Speed (physics + render per env step; render alone)",
        "",
        "| task | fast steps/s | default steps/s | fast ms/render | default ms/render "
        "| render speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for task, r in result["tasks"].items():
        sps, ms = r["steps_per_s"], r["render_ms"]
        lines.append(
            f"| {task} | {sps['fast']:.0f} | {sps['default']:.0f} | {ms['fast']:.2f} "
            f"| {ms['default']:.2f} | {ms['default'] / ms['fast']:.1f}x |"
        )
    lines += [
        "",
        f"## Which change makes the difference (mean abs difference, every {ABLATE_EVERY}th state)",
        "",
        "Each column changes one thing from MuJoCo's defaults on the same state: shadows "
        "off, reflections off, both off (all three rendered by the default env, with "
        "multisampling), multisampling off alone (fast frame vs both off), and all three "
        "off (= the fast path).",
        "",
        "| task | rendered again (no change) | shadows off | reflections off | both off "
        "| multisampling off | all three |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, r in result["tasks"].items():
        a = r["attribution"]
        lines.append(
            f"| {task} | {a['rerender']:.2f} | {a['no_shadow']:.2f} | {a['no_reflection']:.2f} "
            f"| {a['no_shadow_no_reflection']:.2f} | {a['no_msaa_only']:.2f} "
            f"| {a['all_three']:.2f} |"
        )
    lines += ["", "![frames](dmc_render_check.png)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--steps", type=int, default=500, help="env steps per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = ensure_mujoco_gl()
    machine = cpu_kind()
    print(f"machine: {machine}; MUJOCO_GL={backend}", flush=True)
    result = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(shlex.quote(a) for a in ["python", *sys.argv]),
        "machine": machine,
        "mujoco_gl": backend,
        "renderer": "",
        "steps": args.steps,
        "seed": args.seed,
        "tasks": {},
    }
    samples = {}
    shown = min(100, args.steps)  # the step whose frames the PNG shows
    for task in args.tasks:
        start = time.perf_counter()
        try:
            run = rollout(task, args.steps, args.seed)
        except Exception as e:  # a task that does not load is reported, not fatal
            print(f"{task}: skipped ({type(e).__name__}: {e})", flush=True)
            result["tasks_skipped"] = {**result.get("tasks_skipped", {}), task: repr(e)}
            continue
        stats = compare(run["frames"]["fast"], run["frames"]["default"])
        stats.update(
            camera=CAMERAS.get(split_task(task)[0], 0),
            frames=len(run["frames"]["fast"]),
            steps_per_s=run["steps_per_s"],
            render_ms=run["render_ms"],
            attribution=attribute(run),
        )
        result["renderer"] = run["renderer"]
        result["tasks"][task] = stats
        if task in PICTURED:
            samples[task] = (run["frames"]["fast"][shown], run["frames"]["default"][shown])
        print(
            f"{task:<18} mean|d| {stats['mad']:.2f} p99 {stats['p99']:.0f} max {stats['max']} "
            f">8 {100 * stats['frac_gt8']:.2f}% >32 {100 * stats['frac_gt32']:.2f}% "
            f"| consecutive {stats['consecutive_mad']:.2f} shift1 {stats['shift1_mad']:.2f} "
            f"| steps/s fast {run['steps_per_s']['fast']:.0f} "
            f"default {run['steps_per_s']['default']:.0f} "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    (out / "dmc_render_check.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "dmc_render_check.md").write_text(markdown(result))
    if samples:
        picture(samples, shown, out / "dmc_render_check.png")
    print(f"wrote {out}/dmc_render_check.{{json,md,png}}")


if __name__ == "__main__":
    main()
