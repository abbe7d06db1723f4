"""Command line: `reverie train`, `eval`, `dream`, `plot`, `config`, `sizes`, and the sweep
commands `sweep`, `reproduce`, `score` (reverie.sweep)."""

from __future__ import annotations

import argparse
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from reverie.errors import ReverieError
from reverie.interrupts import Interrupted, InterruptGuard

if TYPE_CHECKING:
    pass


class UsageError(ReverieError):
    """A command line argparse refuses: reported as one `reverie: error:` line, status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (no usage block), raised rather than exiting,
    so that `main` reports them like every other bad input; --help still exits."""

    def error(self, message: str):  # type: ignore[override]  # raises instead of exiting
        raise UsageError(f"{message} (`{self.prog} --help` lists the arguments)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reverie", description="DreamerV3 in PyTorch")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train an agent (resumes if --logdir has a run)")
    train.add_argument("--env", help="env id, e.g. gym:CartPole-v1 (default), gym:Pendulum-v1")
    train.add_argument("--logdir", help="run directory (default: logs/<env>-<timestamp>)")
    train.add_argument("--steps", type=int, help="total env steps of the run")
    train.add_argument(
        "--size",
        help="model size preset: 1m 12m 25m 50m 100m 200m 400m, or paper: the size the "
        "paper's code runs the domain at (200m; DMC proprio 1m)",
    )
    train.add_argument("--seed", type=int)
    train.add_argument("--envs", type=int, help="number of parallel envs")
    train.add_argument("--train-ratio", type=float, help="replayed steps per env step")
    train.add_argument(
        "--dry-run",
        action="store_true",
        help="print parameters, replay RAM, peak update memory, updates/s and the estimated "
        "wall time (measured on this machine), and train nothing (the logdir is not touched)",
    )
    train.add_argument(
        "overrides",
        nargs="*",
        help="config overrides key=value, e.g. run.batch_size=8 ablation.free_bits=false",
    )

    ev = sub.add_parser("eval", help="evaluate the latest checkpoint of a run")
    ev.add_argument("--logdir", required=True)
    ev.add_argument("--episodes", type=int, default=10)
    ev.add_argument("--seed", type=int, default=None)
    ev.add_argument(
        "--mode",
        choices=("sample", "mode"),
        help="sample actions (the authors' protocol) or take the most likely one (greedy); "
        "default: the run's run.eval_mode (sample unless set)",
    )
    ev.add_argument("--video", help="record the episodes to this file (.mp4 or .gif)")
    ev.add_argument("--fps", type=int, default=30, help="frames per second of --video")

    dr = sub.add_parser(
        "dream", help="open-loop predictions of the world model: GIF, MP4 and PNG grid"
    )
    dr.add_argument("--logdir", required=True)
    dr.add_argument("--context", type=int, default=5, help="observed steps (default 5)")
    dr.add_argument("--horizon", type=int, default=45, help="imagined steps (default 45)")
    dr.add_argument("--sequences", type=int, default=3, help="number of sequences (default 3)")
    dr.add_argument("--out", help="output file (default LOGDIR/dream.gif, or .png for vectors)")
    dr.add_argument("--fps", type=int, default=10)
    dr.add_argument("--seed", type=int, default=0, help="which replay sequences to pick")

    ex = sub.add_parser(
        "export", help="write the trained policy step (ONNX, TorchScript) or the weights"
    )
    ex.add_argument("--logdir", required=True, help="run directory (or a checkpoint file)")
    ex.add_argument("--format", required=True, choices=["onnx", "torchscript", "safetensors"])
    ex.add_argument("--out", required=True, help="output file")

    pl = sub.add_parser("plot", help="return curves of runs against published DreamerV3 scores")
    pl.add_argument("logdirs", nargs="+", help="logdirs (or folders holding logdirs)")
    pl.add_argument("--out", help="output PNG (default LOGDIR/returns.png or ./returns.png)")
    pl.add_argument("--smooth", type=int, default=10, help="moving average over N episodes")

    cfg = sub.add_parser("config", help="print the full config (defaults, presets, overrides)")
    cfg.add_argument("--env")
    cfg.add_argument("--size")
    cfg.add_argument("overrides", nargs="*")

    sub.add_parser("sizes", help="list the size presets with parameter counts")
    sub.add_parser("envs", help="list the env suites, whether each is installed, example ids")
    ce = sub.add_parser(
        "check-env",
        help="run an env (an id, module:factory or file.py:factory) through reverie's checks",
    )
    ce.add_argument("target", metavar="ID|module:factory")
    ce.add_argument("--steps", type=int, default=200, help="random-action steps (200)")
    ce.add_argument("--seed", type=int, default=0, help="seed of resets and actions (0)")
    ce.add_argument("--pixels", action="store_true", help="build for pixels; check render()")
    _add_sweep_parsers(sub)
    return parser


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """How a sweep's cells run (not part of its spec)."""
    p.add_argument("--jobs", type=int, default=1, help="cells at once on this machine (1)")
    p.add_argument(
        "--gpus", default="auto", help="auto (the visible ones), none, or indices like 0,1"
    )
    p.add_argument("--retries", type=int, default=1, help="restarts of a crashed cell (1)")
    p.add_argument(
        "--executor",
        default="local",
        choices=["local", "slurm", "submitit-local"],
        help="local processes (default), Slurm jobs via submitit, or submitit's local jobs",
    )
    p.add_argument(
        "--slurm",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a submitit parameter, e.g. --slurm slurm_partition=gpu --slurm timeout_min=240",
    )
    p.add_argument("--no-wait", action="store_true", help="submitit: exit once submitted")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the cells, their cost and each one's estimated wall time (measured once "
        "per task and grid variant, as `reverie train --dry-run`); run nothing",
    )


def _add_sweep_parsers(sub) -> None:
    sw = sub.add_parser(
        "sweep", help="tasks x seeds x override grids: one `reverie train` per cell, resumable"
    )
    sw.add_argument("--root", help="the sweep's directory (one logdir per cell under it)")
    sw.add_argument("--status", metavar="ROOT", help="print where the sweep in ROOT stands")
    sw.add_argument("--tasks", help="comma-separated env ids, e.g. gym:CartPole-v1,bsuite:catch/0")
    sw.add_argument("--suite", help="all tasks of a paper suite (dmc_proprio, atari100k, ...)")
    sw.add_argument("--seeds", default="1", help="a count (3), a list (0,4) or a range (0-2)")
    sw.add_argument("--steps", type=int, help="total env steps of every cell")
    sw.add_argument("--size", help="model size of every cell (a preset, or paper)")
    sw.add_argument("--train-ratio", type=float, help="train ratio of every cell")
    sw.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a config key and its values, crossed with the other --grid keys",
    )
    sw.add_argument("overrides", nargs="*", help="config overrides key=value for every cell")
    _add_run_arguments(sw)

    rp = sub.add_parser("reproduce", help="a paper suite with the paper's settings, as a sweep")
    rp.add_argument("suite", help="dmc_proprio, dmc_vision, atari100k, crafter or bsuite")
    rp.add_argument("--tasks", help="a subset of the suite's tasks, comma-separated")
    rp.add_argument("--steps", type=int, help="a shorter budget than the paper's")
    rp.add_argument("--seeds", help="a count, list or range (default: the paper's)")
    rp.add_argument("--size", help="model size (default paper: the paper's for the suite)")
    rp.add_argument("--root", help="the sweep's directory (default logs/reproduce-SUITE)")
    rp.add_argument("overrides", nargs="*", help="config overrides key=value for every cell")
    _add_run_arguments(rp)

    sc = sub.add_parser("score", help="score a sweep against the published DreamerV3 numbers")
    sc.add_argument("root", help="the sweep's directory")
    sc.add_argument("--out", help="folder for score.md, score.json, score.png (default ROOT)")
    sc.add_argument("--reps", type=int, default=2000, help="bootstrap samples (2000)")


def cmd_train(args) -> int:
    from reverie.api import Dreamer, default_logdir
    from reverie.config import ConfigError

    if args.logdir is not None and not args.logdir.strip():
        raise ConfigError(
            "--logdir is empty (an unset shell variable?): pass a directory, or drop "
            "--logdir for logs/<env>-<time>"
        )
    logdir = Path(args.logdir) if args.logdir else default_logdir(args.env or "gym:CartPole-v1")
    keys = {"run.steps": args.steps, "env.num_envs": args.envs, "run.train_ratio": args.train_ratio}
    keys = {k: v for k, v in keys.items() if v is not None}
    if args.dry_run:
        return _train_dry_run(args, logdir, keys)
    agent = Dreamer(
        env=args.env,
        logdir=logdir,
        size=args.size,
        seed=args.seed,
        overrides=args.overrides,
        **keys,
    )
    main_rank = agent.trainer.coordinator.main  # a torchrun job's rank 0 speaks for all
    params = agent.agent.param_count()
    if main_rank:
        print(
            f"reverie: training {agent.cfg.env.id} size {agent.cfg.size} "
            f"({params['total'] / 1e6:.2f}M params) into {logdir}",
            file=sys.stderr,
        )
    try:
        try:
            summary = agent.learn(agent.cfg.run.steps)
        finally:
            agent.close()
    except KeyboardInterrupt as e:  # one that came while closing names the last save too
        raise e if isinstance(e, Interrupted) else Interrupted(agent.trainer.last_saved) from None
    if not main_rank:
        return 0
    print(
        f"done: {summary['step']} env steps, {summary['updates']} updates, "
        f"mean return (last 20 episodes) {summary['mean_return']:.1f}, "
        f"{summary['wall_time']:.0f}s; checkpoint {summary['checkpoint']}"
    )
    return 0


def _train_dry_run(args, logdir: Path, keys: dict) -> int:
    """`reverie train --dry-run`: the run's config as `reverie train` resolves it (a
    logdir's stored one, for a resume), measured by `reverie.dry_run`; writes nothing."""
    from reverie.dry_run import estimate, run_start
    from reverie.run_dir import resolve_config

    flags = {"env.id": args.env, "size": args.size, "seed": args.seed, **keys}
    flags = {k: v for k, v in flags.items() if v is not None}
    cfg = resolve_config(logdir, list(args.overrides), logdir=str(logdir), **flags)
    start = run_start(logdir)
    est = estimate(cfg, start=start, say=_note)
    exists = "resumes it" if start else "not created" if not logdir.exists() else "untouched"
    print(f"reverie train --dry-run ({est.seconds:.0f} s; nothing was trained or written)")
    for line in est.lines():
        print(f"  {line}")
    print(f"  logdir: {logdir} ({exists})")
    return 0


def _note(line: str) -> None:
    print(f"reverie: {line}", file=sys.stderr, flush=True)


def _progress(label: str, total: int | None, unit: str = ""):
    """A rich progress bar on stderr (hidden when stderr is not a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )


def _summary(title: str, rows: dict[str, object]) -> None:
    """The one-screen summary a long command ends with (plain lines when piped)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False, box=None, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows.items():
        table.add_row(key, str(value))
    needed = max(map(len, map(str, rows))) + max(len(str(v)) for v in rows.values()) + 6
    Console(width=max(needed, len(title), Console().width)).print(table)


def cmd_eval(args) -> int:
    import time

    from reverie.rollout import eval_mode, evaluate
    from reverie.run_dir import load_agent

    agent, cfg, ckpt = load_agent(args.logdir).parts()
    seed = args.seed if args.seed is not None else cfg.seed + 2 * 10**6
    step = ckpt.step
    mode = eval_mode(cfg, args.mode)
    if not args.video:
        result = evaluate(agent, cfg, args.episodes, seed=seed, mode=mode)
    else:
        from reverie.viz.video import VideoWriter

        start = time.time()
        writer = VideoWriter(args.video, fps=args.fps)
        with _progress("eval", args.episodes, "episodes") as bar:
            task = bar.add_task("eval", total=args.episodes, info="")

            def done(ep: int, ret: float, length: int) -> None:
                bar.update(task, completed=ep + 1, info=f"return {ret:.1f}, length {length}")

            try:
                result = evaluate(
                    agent,
                    cfg,
                    args.episodes,
                    seed=seed,
                    mode=mode,
                    frames=writer,
                    on_episode=done,
                )
            finally:
                path = writer.close()
    print(
        f"mean return over {args.episodes} episodes: {result['eval/return']:.2f} "
        f"(std {result['eval/return_std']:.2f}, mean length {result['eval/length']:.1f}) "
        f"at step {step}, {'sampled' if mode == 'sample' else 'greedy'} actions"
    )
    if args.video:
        _summary(
            f"reverie eval: {cfg.env.id}",
            {
                "mean return": f"{result['eval/return']:.2f} (std {result['eval/return_std']:.2f})",
                "episodes": f"{args.episodes}, mean length {result['eval/length']:.1f}",
                "trained steps": step,
                "wall time": f"{time.time() - start:.1f}s",
                "video": f"{path} ({writer.frames} frames at {args.fps} fps)",
            },
        )
    return 0


def cmd_dream(args) -> int:
    import time

    import torch

    from reverie.run_dir import load_agent
    from reverie.viz.dream import dream, write_dream

    start = time.time()
    with _progress("dream", 3, "stages") as bar:
        task = bar.add_task("dream", total=3, info="loading checkpoint")
        agent, cfg, ckpt = load_agent(args.logdir).parts()
        torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
        bar.update(task, completed=1, info="replay and open-loop prediction")
        result = dream(
            agent, cfg, args.logdir, args.context, args.horizon, args.sequences, seed=args.seed
        )
        bar.update(task, completed=2, info="writing files")
        if args.out:
            out = Path(args.out)
        else:
            out = Path(args.logdir) / ("dream.gif" if result.images else "dream.png")
        paths = write_dream(result, out, fps=args.fps)
        bar.update(task, completed=3, info="")
    mse = ", ".join(f"{k} {v:.4g}" for k, v in result.mse().items())
    _summary(
        f"reverie dream: {cfg.env.id} at step {ckpt.step}",
        {
            "sequences": f"{result.count} from {result.source}, {result.length} steps each",
            "observed": f"{result.context} steps (green), then "
            f"{result.length - result.context} imagined with the real actions (red)",
            "imagined MSE": mse + ("  (images in 0..1)" if result.images else ""),
            "wall time": f"{time.time() - start:.1f}s",
            **{f"{kind} file": str(path) for kind, path in paths.items()},
        },
    )
    return 0


def cmd_export(args) -> int:
    from reverie.policy import export_policy, export_weights, load_policy

    policy = load_policy(args.logdir)
    if args.format == "safetensors":
        path = export_weights(policy, args.out)
    else:
        path = export_policy(policy, args.out, args.format)
    inputs = ", ".join([*policy.obs_spec.keys, "is_first", "deter", "stoch", "action"])
    print(f"wrote {path} ({args.format})")
    if args.format != "safetensors":
        print(
            f"inputs: {inputs}; outputs: env_action, next_action, next_deter, next_stoch "
            "(the next step's action, deter, stoch inputs; all zero for a new episode)"
        )
    return 0


def cmd_plot(args) -> int:
    import time

    from reverie.viz.plot import find_logdirs, plot_runs

    start = time.time()
    logdirs = find_logdirs(args.logdirs)
    if args.out:
        out = Path(args.out)
    else:
        out = logdirs[0] / "returns.png" if len(logdirs) == 1 else Path("returns.png")
    with _progress("plot", len(logdirs), "runs") as bar:
        task = bar.add_task("plot", total=len(logdirs), info="")
        result = plot_runs(logdirs, out, window=args.smooth, on_run=lambda d: bar.advance(task))
    rows: dict[str, object] = {}
    for name, g in result["groups"].items():
        text = f"{g['runs']} run(s), {g['steps']} steps"
        if "final_return" in g:
            text += f", final return {g['final_return']:.1f}"
        if "final_eval" in g:
            text += f", final eval {g['final_eval']:.1f}"
        if "reference" in g:
            text += f", DreamerV3 {g['reference']:g}"
        if "crafter_score" in g:
            text += f", Crafter score {g['crafter_score']:.1f}%"
        rows[name] = text
    rows["wall time"] = f"{time.time() - start:.1f}s"
    rows.update({f"{kind} plot": str(p) for kind, p in result["paths"].items()})
    _summary(f"reverie plot: {len(logdirs)} run(s)", rows)
    return 0


def cmd_config(args) -> int:
    from reverie.config import make_config, to_yaml

    print(to_yaml(make_config(args.overrides, **{"env.id": args.env, "size": args.size})))
    return 0


def cmd_sizes(args) -> int:
    import torch

    from reverie.agent import Agent
    from reverie.config import SIZES, make_config
    from reverie.specs import ActSpec, ObsSpec

    print(
        f"{'size':>5} {'deter':>6} {'hidden':>6} {'classes':>7} {'depth':>5} {'units':>5}"
        f" {'params (64x64 image, 17 actions)':>34}"
    )
    for name, s in SIZES.items():
        cfg = make_config([], size=name)
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            agent = Agent(ObsSpec({}, {"image": (64, 64, 3)}), ActSpec(True, 17), cfg, "meta")
        total = agent.param_count()["total"]
        print(
            f"{str(name):>5} {s.deter:>6} {s.hidden:>6} {s.classes:>7} {s.depth:>5} {s.units:>5}"
            f" {total / 1e6:>33.1f}M"
        )
    return 0


def cmd_envs(args) -> int:
    from reverie.config import DOMAINS, PRESET_BY_SUITE
    from reverie.envs import SUITE_INFO, suite_installed

    print(f"{'suite':<10} {'installed':<10} {'example id':<22} {'preset':<12} install")
    for suite, (_, extra, example) in SUITE_INFO.items():
        ok = "yes" if suite_installed(suite) else "no"
        preset = PRESET_BY_SUITE.get(suite, suite)
        preset = preset if preset in DOMAINS else "gym"
        how = f"pip install -e .[{extra}]" if extra else "(always)"
        print(f"{suite:<10} {ok:<10} {example:<22} {preset:<12} {how}")
    print("train one with: reverie train --env <id>; DMC from pixels: preset=dmc_vision")
    return 0


def cmd_check_env(args) -> int:
    from reverie.envs.check_env import check_env, resolve_target, summary

    env_id, factory = resolve_target(args.target)
    findings = check_env(env_id, factory, args.steps, args.seed, args.pixels)
    for finding in findings:
        print(finding.line())
    print(summary(args.target, findings))
    return 1 if any(f.level == "error" for f in findings) else 0


def cmd_sweep(args) -> int:
    from reverie.config import ConfigError
    from reverie.sweep.grid import expand
    from reverie.sweep.progress import status_text
    from reverie.sweep.spec import load_spec, make_spec
    from reverie.sweep.suites import paper_suite, pick_tasks

    if args.status:
        spec = load_spec(args.status)
        print(status_text(args.status, spec, expand(spec)))
        return 0
    if not args.root or not args.root.strip():
        raise ConfigError("--root is missing: pass the sweep's directory (or --status ROOT)")
    if args.tasks and args.suite:
        raise ConfigError("pass --tasks or --suite, not both")
    if not args.tasks and not args.suite:
        spec = load_spec(args.root)  # rerun a sweep from its sweep.yaml
        print(f"reverie: resuming the sweep in {args.root} from its sweep.yaml")
    else:
        tasks = args.tasks or list(pick_tasks(paper_suite(args.suite), None))
        spec = make_spec(
            tasks,
            args.seeds,
            args.steps,
            size=args.size,
            train_ratio=args.train_ratio,
            grid=args.grid,
            overrides=args.overrides,
        )
    return _run_sweep(args, args.root, spec)


def cmd_reproduce(args) -> int:
    from reverie.sweep.suites import reproduce_spec

    spec = reproduce_spec(
        args.suite, args.tasks, args.steps, args.seeds, args.size, overrides=args.overrides
    )
    return _run_sweep(args, args.root or f"logs/reproduce-{args.suite}", spec)


def _run_sweep(args, root: str, spec) -> int:
    from reverie.sweep.grid import check_cells, cost, expand
    from reverie.sweep.runner import LocalRunner
    from reverie.sweep.spec import bind_root

    cells = expand(spec)
    check_cells(spec, cells)
    plan = cost(spec, cells)
    print(
        f"reverie: {plan['cells']} cells ({len(spec.tasks)} tasks x {len(spec.seeds)} seeds"
        f"{' x grid' if spec.grid else ''}), {plan['env_steps']:,} env steps and about "
        f"{plan['updates']:,} updates in all, size {', '.join(plan['sizes'])}; root {root}"
    )
    if args.dry_run:
        return _sweep_dry_run(args, root, spec, cells)
    bind_root(root, spec)
    if args.executor == "local":
        runner = LocalRunner(root, spec, cells, args.jobs, args.gpus, args.retries, report=_say)
        outcome = runner.run()
    else:
        from reverie.sweep.slurm import parse_parameters, run_submitit

        parameters = parse_parameters(args.slurm)
        outcome = run_submitit(
            root, spec, cells, args.executor, parameters, wait=not args.no_wait, report=_say
        )
    return _sweep_end(root, cells, outcome, waited=args.executor == "local" or not args.no_wait)


def _sweep_dry_run(args, root: str, spec, cells: list) -> int:
    """`reverie sweep --dry-run`: each cell's command and estimated wall time, from one
    `reverie train --dry-run` measurement per task and grid variant (cells that differ
    only in the seed share it), and the sweep's total; writes nothing."""
    import dataclasses
    import heapq
    import shlex

    from reverie.dry_run import (
        Estimate,
        budget_updates,
        duration_text,
        estimate,
        run_start,
        size_text,
    )
    from reverie.sweep.grid import cell_config, command

    measured: dict[str, Estimate] = {}
    walls: list[float] = []
    memory: list[float] = []
    for cell in cells:
        cfg = cell_config(spec, cell)
        if cell.group not in measured:
            _note(f"measuring {cell.group} (once for its {len(spec.seeds)} seed(s))")
            est = estimate(cfg, jobs=args.jobs, say=_note)
            measured[cell.group] = est
            print(f"{cell.group}: measured once for its cells ({est.seconds:.0f} s)")
            for line in est.lines():
                print(f"  {line}")
        base = measured[cell.group]
        start = run_start(Path(root) / cell.name)
        est = dataclasses.replace(
            base, start=start, updates=budget_updates(cfg.run, spec.steps, start)
        )
        walls.append(est.wall_s)
        held = min(est.capacity, est.steps) * est.bytes_per_step
        memory.append(held + (est.peak_bytes if est.memory_where == "RAM" else 0))
        line = shlex.join(["reverie", *command(spec, cell, root)[3:]])
        print(f"{line}  # {est.updates:,} updates, about {duration_text(est.wall_s)}")
    slots = [0.0] * min(args.jobs, len(cells))  # cells in order, each on the next free slot
    for wall in walls:
        heapq.heappush(slots, heapq.heappop(slots) + wall)
    jobs = len(slots)
    ram = sum(sorted(memory, reverse=True)[:jobs])
    print(
        f"reverie: estimated wall time {duration_text(sum(walls))} for {len(cells)} cells one "
        f"after another; {duration_text(max(slots))} with --jobs {args.jobs} (in order, each "
        f"on the next free slot, its learner measured on its slot's share of the cores); "
        f"RAM of {jobs} cell(s) at once up to {size_text(ram)} (learner peak + replay at the "
        f"budget); longest cell {duration_text(max(walls))}"
    )
    return 0


def _say(line: str) -> None:
    import time

    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def _sweep_end(root: str, cells: list, outcome, waited: bool) -> int:
    if outcome.stopped:
        print(
            f"reverie: sweep stopped ({len(outcome.done) + len(outcome.skipped)} of "
            f"{len(cells)} cells finished); rerun the same command to resume it",
            file=sys.stderr,
        )
        return 130
    if not waited:
        print(f"reverie: jobs submitted; `reverie sweep --status {root}` shows where they stand")
        return 0
    finished = len(outcome.done) + len(outcome.skipped)
    print(f"reverie: {finished} of {len(cells)} cells finished; score: reverie score {root}")
    if outcome.failed:
        for name, error in outcome.failed.items():
            print(f"reverie: cell {name} failed: {error}", file=sys.stderr)
        print(
            f"reverie: {len(outcome.failed)} cell(s) failed (logs: ROOT/<cell>/train.log); "
            "rerun the same command to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_score(args) -> int:
    from reverie.config import ConfigError
    from reverie.sweep.score import write_score

    if args.reps < 100:
        raise ConfigError(f"--reps must be at least 100 bootstrap samples, not {args.reps}")
    result = write_score(args.root, args.out, reps=args.reps)
    print(Path(result["paths"]["markdown"]).read_text())
    for kind, path in result["paths"].items():
        print(f"{kind}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(f"reverie: error: {e}", file=sys.stderr)
        return 2
    handler = {
        "train": cmd_train,
        "eval": cmd_eval,
        "dream": cmd_dream,
        "export": cmd_export,
        "plot": cmd_plot,
        "config": cmd_config,
        "sizes": cmd_sizes,
        "envs": cmd_envs,
        "check-env": cmd_check_env,
        "sweep": cmd_sweep,
        "reproduce": cmd_reproduce,
        "score": cmd_score,
    }[args.command]
    # train: Ctrl-C or SIGTERM saves a checkpoint, and no further one can break that save
    # or this line (the handlers stay ignoring once one came: the process is ending)
    train = args.command == "train"
    guard: AbstractContextManager = (
        InterruptGuard(keep_after_signal=True) if train else nullcontext()
    )
    with guard:
        try:
            return handler(args)
        except ReverieError as e:
            from reverie.distributed import RankLostError

            if isinstance(e, RankLostError):
                raise  # __main__.run reports it, then ignores torchrun's SIGTERM
            message = " ".join(str(e).split("\n"))  # one line, whatever the message holds
            print(f"reverie: error: {message}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:
            print(f"reverie: {interrupted_line(e)}", file=sys.stderr)
            return 130


def interrupted_line(e: KeyboardInterrupt) -> str:
    """What an interrupted command leaves, in one line."""
    saved = e.saved if isinstance(e, Interrupted) else None
    if saved is not None:
        step, path = saved
        return (
            f"interrupted; saved a checkpoint at env step {step} ({path}); "
            "rerun the same command to resume from it"
        )
    if isinstance(e, Interrupted):
        return "interrupted; no checkpoint was saved on this process"
    return "interrupted before training began; nothing new was saved"


if __name__ == "__main__":
    sys.exit(main())
