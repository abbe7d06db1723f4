"""The house: one owner per datum (specs), actions converted in one place, clocks and the
episode tracker of the loop, and the import layering of the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from reverie.clocks import Every, Speedometer, TrainRatio
from reverie.envs import describe_spaces, make_env
from reverie.envs.episode_stats import EpisodeTracker
from reverie.envs.wrappers import OneHotAction
from reverie.specs import ActSpec, decode_latent, encode_latent, replay_length, replay_step

from .conftest import tiny_config

SRC = Path(__file__).parents[1] / "src" / "reverie"
MODEL = {"agent", "world_model", "behavior", "nets", "distributions", "optim", "accel"}


def test_latents_are_stored_as_fp16_and_class_indices_and_read_back():
    deter = torch.randn(2, 3, 8)
    stoch = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 3, 5)), 4).float()
    stored = encode_latent(deter, stoch)
    assert stored["deter"].dtype == torch.float16 and stored["stoch"].dtype == torch.uint8
    assert stored["stoch"].shape == (2, 3, 5)
    back = decode_latent(stored["deter"], stored["stoch"], 4)
    assert torch.equal(back["stoch"], stoch)
    assert torch.allclose(back["deter"], deter, atol=1e-2)


def test_a_replay_step_holds_the_observation_flags_action_and_latent():
    obs = {"vector": np.zeros((2, 3), np.float32)}
    flags = np.array([True, False])
    latent = {"deter": torch.zeros(2, 8), "stoch": torch.eye(4)[[1, 3]][:, None].repeat(1, 5, 1)}
    step = replay_step(obs, np.ones(2, np.float32), flags, ~flags, ~flags, torch.ones(2, 2), latent)
    assert sorted(step) == sorted(
        ["vector", "reward", "is_first", "is_last", "is_terminal", "action", "deter", "stoch"]
    )
    assert step["stoch"].tolist() == [[1] * 5, [3] * 5] and step["deter"].dtype == np.float16
    cfg = tiny_config("replay.context=3")
    assert replay_length(cfg.run, cfg.replay) == cfg.run.batch_length + 3


class StartAt(gym.Wrapper):
    """CartPole whose actions are numbered from 5 (Discrete(2, start=5))."""

    def __init__(self, env):
        super().__init__(env)
        self.action_space = gym.spaces.Discrete(2, start=5)
        self.seen = []

    def step(self, action):
        self.seen.append(action)
        return self.env.step(action - 5)


def test_discrete_actions_are_converted_in_one_wrapper():
    inner = StartAt(gym.make("CartPole-v1"))
    env = OneHotAction(inner)
    env.reset(seed=0)
    env.step(np.array([0.0, 1.0], np.float32))  # the agent's one-hot
    env.step(np.array([0.9, 0.1], np.float32))  # any scores: the largest wins
    env.step(env.action_space.sample())  # a plain index passes through
    assert inner.seen[:2] == [6, 5] and inner.seen[2] in (5, 6)
    assert env.action_space == gym.spaces.Discrete(2, start=5)
    assert ActSpec(True, 2, 5).to_env(np.eye(2)[[1, 0, 1]]).tolist() == [6, 5, 6]
    assert ActSpec(False, 2).to_env(np.array([0.5, -1.0])).tolist() == [0.5, -1.0]


def test_specs_come_from_the_wrapped_env():
    obs, act = describe_spaces(make_env("gym:CartPole-v1"))
    assert obs.vectors == {"vector": 4} and obs.images == {} and obs.keys == ["vector"]
    assert act == ActSpec(True, 2, 0)
    _, act = describe_spaces(make_env("gym:Pendulum-v1"))
    assert act == ActSpec(False, 1, 0, (-2.0,), (2.0,))  # Pendulum's own bounds


def test_clocks_fire_on_time_and_the_train_ratio_is_pure():
    every = Every(10, last=0)
    assert [t for t in range(35) if every(t)] == [10, 20, 30]
    assert not any(Every(None)(t) for t in range(100))
    assert all(Every(0)(t) for t in range(5))
    ratio = TrainRatio(64, 32)  # two updates per env step
    assert ratio.owed(0, 0) == 1 and ratio.owed(3, 1) == 6 and ratio.owed(3, 7) == 0
    assert ratio.owed(3, 1) == 6  # asking again changes nothing
    speed = Speedometer(0.0, 0, 0)
    assert speed.read(2.0, 10, 4) == {"fps/env_steps": 5.0, "fps/updates": 2.0}
    assert speed.read(4.0, 10, 4) == {"fps/env_steps": 0.0, "fps/updates": 0.0}


def test_episode_tracker_counts_transitions_not_reset_steps():
    tracker = EpisodeTracker(2)
    no, yes = np.array([False, False]), np.array([True, True])
    assert tracker.step(np.array([9.0, 9.0]), yes, no, {}) == []  # reset steps: no reward
    assert tracker.step(np.array([1.0, 2.0]), no, no, {}) == []
    done = tracker.step(np.array([1.0, 2.0]), no, np.array([False, True]), {})
    assert [(e.index, e.ret, e.length) for e in done] == [(1, 4.0, 2)]
    done = tracker.step(np.array([1.0, 5.0]), np.array([False, True]), np.array([True, False]), {})
    assert [(e.index, e.ret, e.length) for e in done] == [(0, 3.0, 3)]


def imports_of(path: Path) -> set[str]:
    """The reverie modules a file imports (top level and inside functions), leaving out
    those under `if TYPE_CHECKING:` (annotations only, never imported at run time)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    found = set()
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m == "reverie" or m.startswith("reverie.")}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_envs_and_specs_import_nothing_from_the_model():
    for path in [*SRC.glob("envs/*.py"), SRC / "specs.py", SRC / "clocks.py"]:
        modules = {m.split(".")[1] for m in imports_of(path) if m.count(".") >= 1}
        assert not modules & MODEL, (path.name, sorted(modules & MODEL))
        assert "trainer" not in modules and "rollout" not in modules, path.name


def test_no_import_cycles():
    files = {module_name(p): p for p in SRC.rglob("*.py")}
    graph = {
        name: {m for m in imports_of(p) if m in files and m != name} for name, p in files.items()
    }

    def visit(node, stack):
        assert node not in stack, " -> ".join([*stack, node])
        for nxt in graph[node]:
            if nxt != "reverie":  # the package's lazy __getattr__
                visit(nxt, [*stack, node])

    for name in graph:
        visit(name, [])


# the model core, and what it may import besides itself: the specs and the config (its
# boundary), the accelerator choices and the optimiser
CORE = {"nets", "distributions", "world_model", "behavior", "agent"}
CORE_MAY_IMPORT = CORE | {"specs", "config", "accel", "optim", "errors"}


def test_the_model_core_imports_nothing_from_the_run_layer():
    for name in sorted(CORE):
        modules = {m.split(".")[1] for m in imports_of(SRC / f"{name}.py") if m.count(".") >= 1}
        assert modules <= CORE_MAY_IMPORT, (name, sorted(modules - CORE_MAY_IMPORT))


def test_callbacks_know_a_protocol_not_the_trainer():
    assert not any(m.startswith("reverie.trainer") for m in imports_of(SRC / "callbacks.py"))


def test_every_reader_of_a_checkpoint_goes_through_the_run_dir_module():
    """`run_dir` alone calls the checkpoint file's loaders; eval, dream, export, the policy
    and the API load through its `load_agent` / `require_checkpoint`."""
    for path in SRC.rglob("*.py"):
        if path.name in ("run_dir.py", "checkpoint.py"):
            continue
        found = re.findall(r"(?<!\w)load_(?:latest|file)\(", path.read_text())
        assert not found, (path.name, found)
    readers = {"cli.py": "load_agent(", "policy.py": "load_agent(", "api.py": "checkpoint("}
    for name, call in readers.items():
        assert call in (SRC / name).read_text(), name


def trainer_size() -> tuple[int, int]:
    """(lines, methods) of the Trainer class."""
    tree = ast.parse((SRC / "trainer.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
    methods = [n for n in cls.body if isinstance(n, ast.FunctionDef)]
    assert cls.end_lineno is not None
    return cls.end_lineno - cls.lineno + 1, len(methods)


def test_the_trainer_keeps_only_the_loop():
    """Before `reverie.build` and `reverie.coordinator` took what the trainer built and
    decided for a job, the class had 463 lines and 30 methods; its loop 73 lines."""
    lines, methods = trainer_size()
    assert lines <= 340 and methods <= 28, (lines, methods)
    tree = ast.parse((SRC / "trainer.py").read_text())
    loop = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_loop")
    assert loop.end_lineno is not None and loop.end_lineno - loop.lineno + 1 <= 40
    assert "world" not in (SRC / "trainer.py").read_text()  # the coordinator decides for a job
