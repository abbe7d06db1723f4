"""Command line: `reverie train`, `reverie eval`, `reverie sizes`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _user_errors() -> tuple[type[Exception], ...]:
    from reverie.checkpoint import CheckpointError
    from reverie.config import ConfigError
    from reverie.envs import EnvIdError, UnsupportedSpaceError

    return (ConfigError, EnvIdError, UnsupportedSpaceError, CheckpointError, FileNotFoundError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reverie", description="DreamerV3 in PyTorch")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train an agent (resumes if --logdir has a run)")
    train.add_argument("--env", help="env id, e.g. gym:CartPole-v1 (default), gym:Pendulum-v1")
    train.add_argument("--logdir", help="run directory (default: logs/<env>-<timestamp>)")
    train.add_argument("--steps", type=int, help="total env steps of the run")
    train.add_argument("--size", help="model size preset: 1m 12m 25m 50m 100m 200m 400m")
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

    cfg = sub.add_parser("config", help="print the full config (defaults, presets, overrides)")
    cfg.add_argument("--env")
    cfg.add_argument("--size")
    cfg.add_argument("overrides", nargs="*")

    sub.add_parser("sizes", help="list the size presets with parameter counts")
    return parser


def cmd_train(args) -> int:
    from reverie.api import Dreamer, default_logdir

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


def cmd_eval(args) -> int:
    from reverie import checkpoint
    from reverie.agent import Agent
    from reverie.config import make_config
    from reverie.envs import describe_spaces, env_kwargs, make_env
    from reverie.trainer import evaluate, pick_device

    logdir = Path(args.logdir)
    state = checkpoint.load_latest(logdir)
    if state is None:
        raise FileNotFoundError(
            f"no checkpoint in {logdir}: train there first (reverie train --logdir {logdir})"
        )
    from reverie.config import from_yaml

    cfg = make_config([], base=from_yaml(state["config"]))
    env = make_env(str(cfg.env.id), **env_kwargs(cfg.env))
    obs_spec, act_spec = describe_spaces(env)
    env.close()
    agent = Agent(obs_spec, act_spec, cfg, pick_device(cfg.run.device))
    agent.load_checkpoint_state(state["agent"])
    seed = args.seed if args.seed is not None else cfg.seed + 2 * 10**6
    result = evaluate(agent, cfg, args.episodes, seed=seed)
    print(
        f"mean return over {args.episodes} episodes: {result['eval/return']:.2f} "
        f"(std {result['eval/return_std']:.2f}, mean length {result['eval/length']:.1f}) "
        f"at step {state['counters']['step']}"
    )
    return 0


def cmd_config(args) -> int:
    from reverie.config import make_config, to_yaml

    print(to_yaml(make_config(args.overrides, **{"env.id": args.env, "size": args.size})))
    return 0


def cmd_sizes(args) -> int:
    from reverie.agent import ActSpec, Agent
    from reverie.config import SIZES, make_config
    from reverie.world_model import ObsSpec

    print(
        f"{'size':>5} {'deter':>6} {'hidden':>6} {'classes':>7} {'depth':>5} {'units':>5}"
        f" {'params (64x64 image, 17 actions)':>34}"
    )
    for name, s in SIZES.items():
        cfg = make_config([], size=name)
        agent = Agent(ObsSpec({}, {"image": (64, 64, 3)}), ActSpec(True, 17), cfg, "meta")
        total = agent.param_count()["total"]
        print(
            f"{name:>5} {s.deter:>6} {s.hidden:>6} {s.classes:>7} {s.depth:>5} {s.units:>5}"
            f" {total / 1e6:>33.1f}M"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"train": cmd_train, "eval": cmd_eval, "config": cmd_config, "sizes": cmd_sizes}[
        args.command
    ]
    try:
        return handler(args)
    except _user_errors() as e:
        print(f"reverie: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reverie: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
