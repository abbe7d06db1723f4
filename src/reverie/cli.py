"""Command line: `reverie train`, `eval`, `dream`, `plot`, `config`, `sizes`."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


def _user_errors() -> tuple[type[Exception], ...]:
    from reverie.checkpoint import CheckpointError
    from reverie.config import ConfigError
    from reverie.envs import EnvIdError, UnsupportedSpaceError
    from reverie.envs.checks import EnvContractError
    from reverie.envs.custom import CustomEnvError
    from reverie.envs.vector import EnvWorkerError
    from reverie.files import DiskFullError
    from reverie.lock import LogdirInUseError
    from reverie.trainer import NonFiniteError

    return (
        ConfigError,
        EnvIdError,
        UnsupportedSpaceError,
        CheckpointError,
        FileNotFoundError,
        NonFiniteError,
        EnvWorkerError,
        LogdirInUseError,
        EnvContractError,
        CustomEnvError,
        DiskFullError,
    )


class UsageError(Exception):
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
        "overrides",
        nargs="*",
        help="config overrides key=value, e.g. run.batch_size=8 ablation.free_bits=false",
    )

    ev = sub.add_parser("eval", help="evaluate the latest checkpoint of a run")
    ev.add_argument("--logdir", required=True)
    ev.add_argument("--episodes", type=int, default=10)
    ev.add_argument("--seed", type=int, default=None)
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
    return parser


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
    agent = Dreamer(
        env=args.env,
        logdir=logdir,
        size=args.size,
        seed=args.seed,
        overrides=args.overrides,
        **keys,
    )
    signal.signal(signal.SIGTERM, _raise_interrupt)  # save a checkpoint on `kill` too
    params = agent.agent.param_count()
    print(
        f"reverie: training {agent.cfg.env.id} size {agent.cfg.size} "
        f"({params['total'] / 1e6:.2f}M params) into {logdir}",
        file=sys.stderr,
    )
    try:
        summary = agent.learn(agent.cfg.run.steps)
    finally:
        agent.close()
    print(
        f"done: {summary['step']} env steps, {summary['updates']} updates, "
        f"mean return (last 20 episodes) {summary['mean_return']:.1f}, "
        f"{summary['wall_time']:.0f}s; checkpoint {summary['checkpoint']}"
    )
    return 0


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


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

    from reverie.rollout import evaluate, load_trained

    agent, cfg, state = load_trained(args.logdir)
    seed = args.seed if args.seed is not None else cfg.seed + 2 * 10**6
    step = state["counters"]["step"]
    if not args.video:
        result = evaluate(agent, cfg, args.episodes, seed=seed)
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
                    agent, cfg, args.episodes, seed=seed, frames=writer, on_episode=done
                )
            finally:
                path = writer.close()
    print(
        f"mean return over {args.episodes} episodes: {result['eval/return']:.2f} "
        f"(std {result['eval/return_std']:.2f}, mean length {result['eval/length']:.1f}) "
        f"at step {step}"
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

    from reverie.rollout import load_trained
    from reverie.viz.dream import dream, write_dream

    start = time.time()
    with _progress("dream", 3, "stages") as bar:
        task = bar.add_task("dream", total=3, info="loading checkpoint")
        agent, cfg, state = load_trained(args.logdir)
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
        f"reverie dream: {cfg.env.id} at step {state['counters']['step']}",
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
    }[args.command]
    try:
        return handler(args)
    except _user_errors() as e:
        message = " ".join(str(e).split("\n"))  # one line, whatever the message holds
        print(f"reverie: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "reverie: interrupted; rerun the same command to resume from the last checkpoint",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
