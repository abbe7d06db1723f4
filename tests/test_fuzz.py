"""Fuzzed bad input: a few hundred command lines for `reverie train` and `reverie config`
from a seeded generator (`random.Random(0)`, the same cases every run). Each must end in
exactly one `reverie: error:` line on stderr and exit status 2: no traceback, nothing on
stdout, no new logdir, and not one byte or mtime changed in an existing one.

The cases run in-process (`main(argv)`), which keeps hundreds of them fast; a handful run
again as real processes, whose stderr and status must be the same. tests/test_bad_input.py
holds the hand-written cases (corrupt files, checkpoints of another version, ...).
"""

from __future__ import annotations

import os
import random
import shutil
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from reverie.cli import main
from reverie.config import all_keys, default_config

from .conftest import TINY

# the tiny model on a CPU; env.num_envs is left out so that `--envs` is not overridden
BASE = [o for o in TINY if not o.startswith("env.num_envs=")] + ["replay.chunk=64"]
RUN_STEPS = 16  # the existing run's step (before the first update: quick to make)
DEFAULTS = default_config()
KEYS = [k for k in all_keys(DEFAULTS) if not k.startswith("env.kwargs")]
TYPES = {k: type(OmegaConf.select(DEFAULTS, k)) for k in KEYS}
INT_KEYS = sorted(k for k, t in TYPES.items() if t is int)
FLOAT_KEYS = sorted(k for k, t in TYPES.items() if t is float)
BOOL_KEYS = sorted(k for k, t in TYPES.items() if t is bool)
FREE_STR = ("logdir", "logger.wandb_project", "logger.wandb_entity", "preset")  # any string
CHOICE_KEYS = sorted(k for k, t in TYPES.items() if t is str and k not in (*FREE_STR, "env.id"))

# The contract, written out here rather than read from reverie.config: what a demanding
# user calls nonsense. Each value below must be refused by the config, before any file.
POSITIVE_INT = [
    "env.num_envs", "env.action_repeat", "model.deter", "model.hidden", "model.classes",
    "model.stoch", "model.units", "model.blocks", "model.decoder_blocks", "model.depth",
    "run.batch_size", "run.steps", "run.eval_episodes", "replay.capacity", "replay.chunk",
    "behavior.horizon",
]  # fmt: skip
NONNEGATIVE_INT = [
    "seed", "env.time_limit", "model.enc_layers", "optim.warmup", "replay.context",
    "run.train_fill", "run.eval_every", "run.dream_every", "run.threads",
    "run.nonfinite_patience",
]  # fmt: skip
AT_LEAST = {
    **{f"model.{k}_layers": 1 for k in ("dec", "reward", "cont", "actor", "critic")},
    "model.bins": 2,
    "run.batch_length": 2,
}
POSITIVE_FLOAT = [
    "run.train_ratio", "optim.lr", "optim.model_lr", "optim.actor_lr", "optim.critic_lr",
    "optim.eps", "optim.model_eps", "optim.ac_eps", "optim.model_clip", "optim.ac_clip",
    "behavior.retnorm_limit", "model.action_maxstd", "behavior.slow_critic_rate",
]  # fmt: skip
NONNEGATIVE_FLOAT = [
    "env.step_timeout", "behavior.actor_entropy", "optim.agc", "optim.agc_pmin",
    "replay.recency_exponent", "replay.disk_budget_mb", "run.log_every",
    "run.checkpoint_every", "model.action_minstd",
    *(k for k in FLOAT_KEYS if k.startswith("loss.")),
]  # fmt: skip
FRACTIONS = ["model.unimix", "model.actor_unimix", "behavior.lam", "behavior.retnorm_decay"]
BELOW_ONE = ["optim.beta1", "optim.beta2"]  # [0, 1): a beta of 1 never forgets
HUGE_INT = [*(k for k in INT_KEYS if k.startswith("model.")), "run.batch_size"]
HUGE_INT += ["run.batch_length", "behavior.horizon", "replay.chunk"]
HUGE_FLOAT = ["run.train_ratio", "optim.lr", "optim.model_lr", *FRACTIONS, *BELOW_ONE]
HUGE_FLOAT += ["behavior.retnorm_low", "behavior.retnorm_high"]


@dataclass(frozen=True)
class Case:
    """`flags` go before the overrides (argparse takes the positionals in one run), `tail`
    after them (a flag missing its value at the end of the line)."""

    category: str
    flags: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    target: str = "new"  # new: a logdir that must stay absent; run: the existing run; config
    must: str = ""  # the error line names this (the key, value or flag at fault)
    logdir: str = ""  # a special --logdir: empty, a file, below a file
    tail: tuple[str, ...] = ()


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word))
    op = rng.choice(["drop", "swap", "add", "change"])
    if op == "drop" and len(word) > 1:
        return word[:i] + word[i + 1 :]
    if op == "swap" and i + 1 < len(word) and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == "add":
        return word[:i] + rng.choice(string.ascii_lowercase) + word[i:]
    return (
        word[:i] + rng.choice([c for c in string.ascii_lowercase if c != word[i]]) + word[i + 1 :]
    )


def _is_key_or_section(key: str) -> bool:
    return key in KEYS or any(k.startswith(key + ".") for k in KEYS) or key.startswith("env.kwargs")


def _target(rng: random.Random, config_ok: bool = True) -> str:
    return rng.choice(["new", "run", "config"] if config_ok else ["new", "run"])


def unknown_keys(rng: random.Random) -> list[Case]:
    cases = []
    while len(cases) < 40:  # typos of real keys: a leaf, or a section
        key = rng.choice(KEYS)
        parts = key.split(".")
        j = rng.randrange(len(parts))
        parts[j] = _typo(parts[j], rng)
        typo = ".".join(parts)
        if not _is_key_or_section(typo) and all(parts):
            value = rng.choice(["1", "0.5", "true", "abc"])
            cases.append(Case("unknown key", (), (f"{typo}={value}",), _target(rng), typo))
    made_up = ["trainer", "optimizer", "agent", "wm", "actor", "data", "model2", "Run", "ENV"]
    for _ in range(12):  # made-up sections with real leaves
        key = f"{rng.choice(made_up)}.{rng.choice(KEYS).split('.')[-1]}"
        cases.append(Case("unknown key", (), (f"{key}=1",), _target(rng), key))
    for _ in range(8):  # made-up leaves in real sections
        section = rng.choice(["env", "model", "loss", "ablation", "behavior", "optim", "run"])
        leaf = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9)))
        key = f"{section}.{leaf}"
        if not _is_key_or_section(key):
            cases.append(Case("unknown key", (), (f"{key}=2",), _target(rng), key))
    return cases


WRONG = {
    int: ["abc", "[1, 2]", "{a: 1}", "1.5", "true", "''", "", "1e30", "null", "[]", "yes", "nan"],
    float: ["abc", "[1, 2]", "{a: 1}", "true", "''", "", "null", "[]", "yes", "1,5", "0.5.1"],
    bool: ["abc", "[1, 2]", "{a: 1}", "1.5", "''", "", "nan", "null", "maybe", "[]"],
    str: ["[1, 2]", "{a: 1}", "[]", "{}", "", "null"],
}


def wrong_types(rng: random.Random) -> list[Case]:
    cases = []
    for _ in range(50):
        key = rng.choice(KEYS)
        values = WRONG[TYPES[key]] + (["abc", "123", "true"] if key in CHOICE_KEYS else [])
        value = rng.choice(values)
        cases.append(Case("wrong type", (), (f"{key}={value}",), _target(rng), key))
    return cases


def bad_numbers(rng: random.Random) -> list[Case]:
    pool = [(k, v) for k in POSITIVE_INT for v in ("0", "-1", "-100")]
    pool += [(k, v) for k in NONNEGATIVE_INT for v in ("-1", "-7")]
    pool += [(k, str(low - 1)) for k, low in AT_LEAST.items()] + [("model.bins", "-3")]
    pool += [(k, v) for k in POSITIVE_FLOAT for v in ("0", "-1", "-1e30", "-0.001")]
    pool += [(k, v) for k in NONNEGATIVE_FLOAT for v in ("-1", "-1e30", "-0.5")]
    pool += [(k, v) for k in FRACTIONS for v in ("-0.01", "1.5", "2")]
    pool += [(k, v) for k in BELOW_ONE for v in ("1", "1.0", "-0.1")]
    pool += [(k, "1000000000000") for k in HUGE_INT] + [(k, "1e30") for k in HUGE_FLOAT]
    pool += [(k, "1e30") for k in INT_KEYS]  # a float for an int
    pool += [("seed", str(2**32)), ("seed", str(10**30)), ("optim.lr", "3")]
    pool += [("behavior.discount_horizon", v) for v in ("0", "0.5", "-333")]
    pool += [("behavior.retnorm_low", "-1"), ("behavior.retnorm_high", "101")]
    pool += [("behavior.retnorm_low", "96"), ("model.action_minstd", "2")]  # low above high
    cases = []
    for key, value in rng.sample(pool, 45):
        cases.append(Case("bad number", (), (f"{key}={value}",), _target(rng), key.split(".")[-1]))
    for flag, value in [("--steps", "0"), ("--steps", "-5"), ("--envs", "0"), ("--envs", "-2")]:
        cases.append(Case("bad number", (flag, value), (), _target(rng, False), value))
    cases.append(Case("bad number", ("--seed", "-1"), (), "new", "seed"))
    return cases


def empty_strings(rng: random.Random) -> list[Case]:
    cases = [Case("empty string", (), (f"{k}=''",), _target(rng), k) for k in CHOICE_KEYS]
    cases += [Case("empty string", (), ("env.id=''",), _target(rng), "env.id")]
    for key in rng.sample([*INT_KEYS, *FLOAT_KEYS, *BOOL_KEYS], 5):
        cases.append(Case("empty string", (), (f"{key}=''",), _target(rng), key))
    for key in rng.sample(KEYS, 4):  # key= : YAML's null
        cases.append(Case("empty string", (), (f"{key}=",), _target(rng), key))
    cases += [
        Case("empty string", ("--env", ""), (), "new", "env.id is empty"),
        Case("empty string", ("--env", "  "), (), "new", "env.id is empty"),
        Case("empty string", ("--size", ""), (), "new", "size"),
        Case("empty string", ("--size", ""), (), "run", "size"),
        Case("empty string", (), (), "new", "--logdir is empty", logdir="empty"),
    ]
    return cases


def nonfinite(rng: random.Random) -> list[Case]:
    values = ["nan", "inf", "-inf", ".nan", ".inf", "-.inf", "NaN", "Infinity"]
    cases = []
    for key in rng.sample(FLOAT_KEYS, 22):
        cases.append(Case("nan/inf", (), (f"{key}={rng.choice(values)}",), _target(rng), key))
    for key in rng.sample(INT_KEYS, 4):
        cases.append(Case("nan/inf", (), (f"{key}={rng.choice(values)}",), _target(rng), key))
    for value in ("nan", "inf", "-inf", "NaN"):
        cases.append(Case("nan/inf", ("--train-ratio", value), (), _target(rng, False), "ratio"))
    return cases


def image_sizes(rng: random.Random) -> list[Case]:
    cases = []
    for size in (
        "0",
        "-1",
        "1",
        "3",
        "32",
        "63",
        "65",
        "100",
        "272",  # 17x17 after 4 halvings: past the 16x16 the encoder allows
        "100000",
        "10**9",
        "64.5",
    ):
        pixels = rng.choice(["env.pixels=true", "env.pixels=false"])
        overrides = (f"env.image_size={size}", pixels)
        cases.append(Case("image size", (), overrides, _target(rng), "env.image_size"))
    return cases


def train_ratios(rng: random.Random) -> list[Case]:
    cases = [
        Case("train ratio", (), (f"run.train_ratio={v}",), _target(rng), "run.train_ratio")
        for v in ("0", "-1", "-0.001", "0.0", "1e30", "1e7", "-1e30")
    ]
    for value in ("0", "-5", "1e30"):
        cases.append(
            Case("train ratio", ("--train-ratio", value), (), _target(rng, False), "ratio")
        )
    return cases


def steps_below(rng: random.Random) -> list[Case]:
    must = f"already at step {RUN_STEPS}"
    cases = [Case("steps below", ("--steps", str(n)), (), "run", must) for n in (1, 8, 15)]
    for n in rng.sample(range(2, RUN_STEPS), 3):
        cases.append(Case("steps below", ("--steps", str(n)), (), "run", must))
    for n in rng.sample(range(1, RUN_STEPS), 2):
        cases.append(Case("steps below", (), (f"run.steps={n}",), "run", must))
    return cases


def sizes_and_presets(rng: random.Random) -> list[Case]:
    sizes = ["3m", "1M", "12", "m", "200mb", "1m1", "paper2", "Paper", "800m", "0m", "1m "]
    sizes += ["".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(4))]
    cases = []
    for name in sizes:
        flags, overrides = rng.choice([(("--size", name), ()), ((), (f"size={name}",))])
        cases.append(Case("size/preset", flags, overrides, rng.choice(["new", "config"]), name))
    for name in ("3m", "paper2"):
        cases.append(Case("size/preset", (), (f"paper_size={name}",), _target(rng), "paper_size"))
    presets = ["dmc", "gymm", "atari_100k", "Atari", "dmc-vision", "crafter2", "none", "default"]
    for name in presets:
        cases.append(Case("size/preset", (), (f"preset={name}",), _target(rng), name))
    return cases


def env_ids(rng: random.Random) -> list[Case]:
    ids = ["gym:Nope-v0", "gym:cartpole-v1", "gym:CartPole-v99", "nosuite:task", "gym::", ":x"]
    ids += ["gym:", "crafter:nope", "atari:nope", "memmaze:nope", "${oops}", "gym:${x}"]
    while len(ids) < 16:
        ids.append("gym:" + _typo("CartPole-v1", rng))
        if ids[-1] in ("gym:CartPole-v1", "gym:CartPole-v0"):
            ids.pop()
    cases = []
    for env_id in ids:
        flags, overrides = rng.choice([(("--env", env_id), ()), ((), (f"env.id={env_id}",))])
        part = env_id.split(":")[-1] or "empty part"
        if env_id.endswith(":") and overrides:
            part = "env.id"  # YAML reads `env.id=gym:` as a mapping
        if "${" in env_id and overrides:
            part = "interpolation"
        cases.append(Case("env id", flags, overrides, rng.choice(["new", "run"]), part))
    return cases


def logdirs() -> list[Case]:
    return [
        Case("logdir", (), (), "new", "is a file", logdir="file"),
        Case("logdir", ("--steps", "5"), ("run.batch_size=2",), "new", "is a file", logdir="file"),
        Case("logdir", (), (), "new", "cannot be created", logdir="under_file"),
        Case("logdir", (), (), "new", "cannot be created", logdir="deep_under_file"),
    ]


def malformed(rng: random.Random) -> list[Case]:
    fixed = ["abc", "==", "=", ".=", "a..b=1", "=1", "run.=1", ".run.steps=1", "run..steps=1"]
    fixed += ["run. steps=1", "run.steps==5", "=run.steps", "seed=${run.steps}", "run"]
    cases = [Case("malformed override", (), (o,), _target(rng), "override") for o in fixed]
    for case in cases:
        if case.overrides[0] in ("run. steps=1", "run.steps==5", "run"):
            object.__setattr__(case, "must", "run")
    for _ in range(6):  # a real key without its '=' (key value, keyvalue)
        key = rng.choice(KEYS)
        cases.append(
            Case("malformed override", (), (key + rng.choice(["", "1", ":1"]),), "new", key)
        )
    argparse_cases = [
        ("--stepz", "5"), ("--steps", "1.5"), ("--steps", "5x"), ("--steps", "1e3"),
        ("--envs", "two"), ("--seed", "0.5"), ("--train-ratio", "fast"), ("-x",), ("--Steps", "5"),
    ]  # fmt: skip
    for flags in argparse_cases:
        cases.append(Case("malformed flag", flags, (), rng.choice(["new", "run"]), flags[0]))
    for flag in ("--steps", "--logdir", "--size", "--env", "--seed", "--envs"):  # no value
        cases.append(Case("malformed flag", (), (), rng.choice(["new", "run"]), flag, tail=(flag,)))
    for flags in [("--bogus",), ("--steps", "5"), ("--logdir", "x")]:
        cases.append(Case("malformed flag", flags, (), "config", flags[0]))
    cases.append(Case("malformed flag", (), (), "config", "--env", tail=("--env",)))
    return cases


def generate() -> list[Case]:
    rng = random.Random(0)
    return [
        *unknown_keys(rng),
        *wrong_types(rng),
        *bad_numbers(rng),
        *empty_strings(rng),
        *nonfinite(rng),
        *image_sizes(rng),
        *train_ratios(rng),
        *steps_below(rng),
        *sizes_and_presets(rng),
        *env_ids(rng),
        *logdirs(),
        *malformed(rng),
    ]


CASES = generate()


def case_id(case: Case) -> str:
    words = " ".join(case.flags + case.overrides + case.tail)
    return f"{case.category.replace(' ', '_')}[{case.target}{case.logdir}]:{words}"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny finished run at step RUN_STEPS, shared by the cases (which must not touch it)."""
    logdir = tmp_path_factory.mktemp("fuzz") / "run"
    assert main(["train", "--logdir", str(logdir), "--steps", str(RUN_STEPS), *BASE]) == 0
    return logdir


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry below root (root included): a file's bytes and mtime, a directory's mtime."""
    out: dict[str, tuple] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        data = path.read_bytes() if path.is_file() else None
        out[str(path.relative_to(root))] = (st.st_mtime_ns, st.st_mode, data)
    return out


def argv_of(case: Case, logdir: str) -> list[str]:
    if case.target == "config":
        return ["config", *case.flags, *case.overrides, *case.tail]
    head = ["train", "--logdir", logdir, "--steps", "40", *case.flags]
    return [*head, *BASE, *case.overrides, *case.tail]


def prepare(case: Case, tmp: Path, run_dir: Path) -> str:
    """The case's --logdir (made ready under tmp)."""
    if case.target == "run":
        return str(run_dir)
    if case.logdir == "empty":
        return ""
    if case.logdir:
        (tmp / "afile").write_text("not a logdir\n")
        below = {"file": "", "under_file": "run", "deep_under_file": "a/b"}[case.logdir]
        return str(tmp / "afile" / below)
    return str(tmp / "new")


def check_one_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("reverie: error: "), err
    assert "Traceback" not in err and out == "", (out, err)
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_input_is_one_error_line(case, run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default logdir (logs/...) would land here
    logdir = prepare(case, tmp_path, run_dir)
    before = snapshot(run_dir)
    made = sorted(os.listdir(tmp_path))
    line = check_one_error(capsys, argv_of(case, logdir))
    assert case.must in line, (case.must, line)
    assert snapshot(run_dir) == before
    assert sorted(os.listdir(tmp_path)) == made  # no new logdir, nothing beside it


def test_the_generator_covers_every_category_with_hundreds_of_cases():
    counts: dict[str, int] = {}
    for case in CASES:
        counts[case.category] = counts.get(case.category, 0) + 1
    assert len(CASES) >= 250 and len(set(map(case_id, CASES))) >= 240, counts
    assert min(counts.values()) >= 4, counts
    assert {c.target for c in CASES} == {"new", "run", "config"}
    assert generate() == CASES  # seeded: the same cases every run


SUBPROCESS = [  # one of several kinds; each also run in-process, for the same line
    Case("unknown key", (), ("run.batch_sise=3",), "run", "run.batch_sise"),
    Case("nan/inf", ("--train-ratio", "nan"), (), "new", "ratio"),
    Case("malformed flag", ("--steps", "abc"), (), "new", "--steps"),
    Case("steps below", ("--steps", "3"), (), "run", f"already at step {RUN_STEPS}"),
    Case("malformed override", (), ("==",), "config", "override"),
]


@pytest.mark.slow
def test_a_real_process_ends_the_same(run_dir, tmp_path, capsys):
    procs, expected = [], []
    for i, case in enumerate(SUBPROCESS):
        cwd = tmp_path / str(i)
        cwd.mkdir()
        argv = argv_of(case, prepare(case, cwd, run_dir))
        before = snapshot(run_dir)
        expected.append(check_one_error(capsys, argv))
        assert snapshot(run_dir) == before
        cmd = [sys.executable, "-m", "reverie.cli", *argv]
        procs.append(subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    before = snapshot(run_dir)
    for i, (proc, line) in enumerate(zip(procs, expected)):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err.decode()
        assert err.decode().splitlines() == [line] and out == b""
        assert os.listdir(tmp_path / str(i)) == []
    assert snapshot(run_dir) == before


@pytest.fixture
def lockable(tmp_path):
    """A folder to fill, and `lock()`, after which no one may write below it: by permission
    bits for a user, and for root (whom they do not stop; CI runs as root) by remounting a
    tmpfs read-only."""
    root = tmp_path / "locked"
    root.mkdir()
    as_root = os.geteuid() == 0
    if as_root:
        made = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(root)],
            capture_output=True,
            text=True,
        )
        assert made.returncode == 0, f"root could not mount a tmpfs: {made.stderr}"

    def lock() -> None:
        if as_root:
            ro = subprocess.run(["mount", "-o", "remount,ro", str(root)], capture_output=True)
            assert ro.returncode == 0, ro.stderr
        else:
            for path in [root, *root.iterdir()]:
                path.chmod(0o500)

    try:
        yield root, lock
    finally:
        if as_root:
            subprocess.run(["umount", "-l", str(root)], capture_output=True)
        else:
            for path in [root, *root.iterdir()]:
                path.chmod(0o700)


def test_an_unwritable_logdir_is_refused(run_dir, lockable, capsys):
    root, lock = lockable
    run, empty = root / "run", root / "empty"
    shutil.copytree(run_dir, run)
    empty.mkdir()
    lock()
    before = snapshot(run)
    for logdir in (run, empty / "new"):
        argv = ["train", "--logdir", str(logdir), "--steps", "40", *BASE]
        line = check_one_error(capsys, argv)
        assert "not writable" in line and "pick a new --logdir" in line
    assert snapshot(run) == before and os.listdir(empty) == []


def test_an_env_kwarg_the_env_does_not_take(tmp_path, capsys):
    line = check_one_error(
        capsys, ["train", "--logdir", str(tmp_path / "new"), *BASE, "env.kwargs.bogus=1"]
    )
    assert "env.kwargs" in line and not (tmp_path / "new").exists()
