"""Configuration: typed defaults, size and domain presets (YAML), dotted overrides, validation.

The schema is a tree of dataclasses handed to OmegaConf, which parses YAML and
`key=value` overrides and checks types; this module adds the checks OmegaConf
cannot express (choices, ranges) and error messages that name the closest keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from reverie.errors import ReverieError


class ConfigError(ReverieError, ValueError):
    """A bad config key or value; the message names it and what to use instead."""


@dataclass
class EnvConfig:
    id: str = "gym:CartPole-v1"
    num_envs: int = 1
    parallel: str = "auto"  # auto (async when num_envs > 1) | sync | async (worker processes)
    image_size: int = 64
    pixels: bool = False  # observe rendered frames instead of the env's own observation
    action_repeat: int = 1
    time_limit: int = 0  # 0 keeps the env's own limit
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the env constructor
    step_timeout: float = 60.0  # async: seconds a step may take (resets: 300) before restart


@dataclass
class ModelConfig:
    deter: int = 512
    hidden: int = 64
    classes: int = 4
    stoch: int = 32
    depth: int = 4  # CNN base channels
    units: int = 64  # MLP width
    blocks: int = 8  # block-diagonal GRU groups
    norm: str = "rms"  # rms (2024 code) | layer (paper)
    enc_layers: int = 3
    dec_layers: int = 3
    reward_layers: int = 1
    cont_layers: int = 1
    actor_layers: int = 3
    critic_layers: int = 3
    bins: int = 255
    twohot_space: str = "raw"  # raw: bins at symexp(linspace) (2024 code) | symlog (2023 code)
    decoder_blocks: int = 8  # image decoder: blocks of the deter -> 4x4 map layer (bspace)
    unimix: float = 0.01
    actor_unimix: float = 0.0  # the 2024 code passes unimix to the policy but does not apply it
    cnn_strided: bool = False  # False: conv + 2x2 max-pool (2024 code); True: stride-2 conv
    action_minstd: float = 0.1
    action_maxstd: float = 1.0


@dataclass
class LossConfig:
    dec: float = 1.0
    rew: float = 1.0
    con: float = 1.0
    dyn: float = 1.0
    rep: float = 0.1
    actor: float = 1.0
    critic: float = 1.0
    repval: float = 0.3  # replay value loss (2024 code)
    slowreg: float = 1.0  # critic regulariser toward the slow critic
    free_nats: float = 1.0


@dataclass
class AblationConfig:
    """Switches for the ablations of the paper (its ablation study of the robustness
    techniques and learning signals)."""

    free_bits: bool = True
    kl_balance: bool = True  # False: dyn and rep both weighted 0.5 (the mean of the two)
    symlog: bool = True
    twohot: bool = True  # False: reward and critic regress a single symlog value (MSE)
    retnorm: str = "percentile"  # percentile | none | advstd
    task_grad: bool = True  # reward and continue gradients into the world model
    recon_grad: bool = True  # decoder gradients into the world model


@dataclass
class BehaviorConfig:
    horizon: int = 15
    discount_horizon: float = 333.0  # gamma = 1 - 1/333
    # continue target (1 - is_terminal) * gamma, imagination discounts by the continue
    # probability alone and weights start at its cumprod (2024 code); False: the 2023 form,
    # target 1 - is_terminal, the continue head's mode times gamma, first weight 1
    contdisc: bool = True
    repval_grad: bool = True  # the replay value loss trains the world model (2024 code)
    lam: float = 0.95
    actor_entropy: float = 3e-4
    slow_critic_rate: float = 0.02
    retnorm_decay: float = 0.99
    retnorm_low: float = 5.0
    retnorm_high: float = 95.0
    retnorm_limit: float = 1.0


@dataclass
class OptimConfig:
    name: str = "laprop"  # laprop (2024 code) | adam (2023 paper)
    lr: float = 4e-5
    eps: float = 1e-20
    beta1: float = 0.9
    beta2: float = 0.999
    warmup: int = 1000
    agc: float = 0.3
    agc_pmin: float = 1e-3
    # adam (paper) settings: per module lr, eps and global-norm clip
    model_lr: float = 1e-4
    actor_lr: float = 3e-5
    critic_lr: float = 3e-5
    model_eps: float = 1e-8
    ac_eps: float = 1e-5
    model_clip: float = 1000.0
    ac_clip: float = 100.0


@dataclass
class ReplayConfig:
    capacity: int = 5_000_000
    chunk: int = 1024
    selector: str = "uniform"  # uniform | recency
    recency_exponent: float = 3.0  # recency: age = size * u**exponent
    online: bool = True  # every new sequence is trained on once promptly, before uniform draws
    context: int = 1  # replayed latents: steps before the sequence whose stored state starts it
    save: bool = True  # write chunks to logdir/replay
    disk_budget_mb: float = 0.0  # chunk files past this are deleted, oldest first; 0 = no limit


@dataclass
class RunConfig:
    steps: int = 50_000  # total env steps of the run
    train_ratio: float = 512.0  # replayed steps per env step
    batch_size: int = 16
    batch_length: int = 64
    train_fill: int = 0  # replay steps before updates start; 0: batch_size * batch_length
    eval_every: int = 10_000  # env steps; 0 disables
    eval_episodes: int = 5
    # eval actions: sample (the authors' code, behind every published score) | mode (greedy)
    eval_mode: str = "sample"
    dream_every: int = 0  # env steps between open-loop dream videos (TensorBoard); 0 = off
    log_every: float = 30.0  # seconds between train-metric lines
    checkpoint_every: float = 300.0  # seconds
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op threads; 0 = cores not used by env workers
    compile: str = "auto"  # torch.compile the update: auto (when a C++ compiler exists) | on | off
    # CUDA only: the compiled regions replay as CUDA graphs (one launch each instead of
    # hundreds of kernels; Inductor's triton.cudagraphs, as torch.compile's reduce-overhead)
    cudagraphs: bool = False
    precision: str = "auto"  # matmul precision: auto (bf16 where the hardware has it) | fp32 | bf16
    nonfinite_patience: int = 10  # non-finite updates in a row (each skipped) before stopping
    progress: bool = True
    tensorboard: bool = True


@dataclass
class LoggerConfig:
    wandb: bool = False  # mirror metrics.jsonl and dream videos to Weights & Biases ([wandb])
    wandb_project: str = "reverie"
    wandb_entity: str = ""  # "" : the W&B default entity of the logged-in user


@dataclass
class Config:
    seed: int = 0
    size: str = "1m"  # a size preset, or "paper": the size the paper's code runs the domain at
    paper_size: str = "200m"  # that size, set by the domain preset (the code's default: 200m)
    preset: str = ""  # domain preset of configs/domains.yaml; "" picks it by the env's suite
    logdir: str = ""
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    behavior: BehaviorConfig = field(default_factory=BehaviorConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    run: RunConfig = field(default_factory=RunConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


CHOICES = {
    "env.parallel": ("auto", "sync", "async"),
    "model.norm": ("rms", "layer"),
    "model.twohot_space": ("raw", "symlog"),
    "ablation.retnorm": ("percentile", "none", "advstd"),
    "optim.name": ("laprop", "adam"),
    "replay.selector": ("uniform", "recency"),
    "run.device": ("auto", "cpu", "cuda"),
    "run.eval_mode": ("sample", "mode"),
    "run.compile": ("auto", "on", "off"),
    "run.precision": ("auto", "fp32", "bf16"),
}
POSITIVE = (
    "env.num_envs",
    "env.image_size",
    "env.action_repeat",
    "model.deter",
    "model.hidden",
    "model.classes",
    "model.stoch",
    "model.units",
    "model.blocks",
    "model.bins",
    "model.decoder_blocks",
    "run.batch_size",
    "run.batch_length",
    "run.train_ratio",
    "replay.capacity",
    "replay.chunk",
    "behavior.horizon",
    "run.steps",
    "run.eval_episodes",
    "model.depth",
    "model.action_maxstd",
    "behavior.retnorm_limit",
    "optim.eps",
    "optim.model_eps",
    "optim.ac_eps",
    "optim.model_clip",
    "optim.ac_clip",
)
# key: (low, high, hint); low and high inclusive, None: unbounded. POSITIVE and the
# checks of `validate` cover the rest; every float key must also be finite.
RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "seed": (0, 2**32 - 1, ""),  # numpy's seed range
    "env.time_limit": (0, None, " (0 keeps the env's own limit)"),
    "env.step_timeout": (0, None, " (0 waits forever)"),
    "model.bins": (2, None, ""),
    "model.enc_layers": (0, None, ""),
    "model.dec_layers": (1, None, ""),
    "model.reward_layers": (1, None, ""),
    "model.cont_layers": (1, None, ""),
    "model.actor_layers": (1, None, ""),
    "model.critic_layers": (1, None, ""),
    "model.unimix": (0, 1, ""),
    "model.actor_unimix": (0, 1, ""),
    "model.action_minstd": (0, None, ""),
    **{f"loss.{k}": (0, None, " (0 turns the term off)") for k in LossConfig.__annotations__},
    "loss.free_nats": (0, None, ""),
    "behavior.discount_horizon": (1, None, " (the discount is 1 - 1/discount_horizon)"),
    "behavior.lam": (0, 1, ""),
    "behavior.actor_entropy": (0, None, ""),
    "behavior.slow_critic_rate": (0, 1, ""),
    "behavior.retnorm_decay": (0, 1, ""),
    "behavior.retnorm_low": (0, 100, " (a percentile)"),
    "behavior.retnorm_high": (0, 100, " (a percentile)"),
    "optim.lr": (0, 1, ""),
    "optim.model_lr": (0, 1, ""),
    "optim.actor_lr": (0, 1, ""),
    "optim.critic_lr": (0, 1, ""),
    "optim.warmup": (0, None, ""),
    "optim.agc": (0, None, " (0 turns clipping off)"),
    "optim.agc_pmin": (0, None, ""),
    "replay.recency_exponent": (0, None, ""),
    "replay.context": (0, None, ""),
    "replay.disk_budget_mb": (0, None, " (0 = no limit)"),
    "run.batch_length": (2, None, ""),
    "run.train_fill": (0, None, " (0: batch_size * batch_length)"),
    "run.eval_every": (0, None, " (0 turns evaluation off)"),
    "run.dream_every": (0, None, " (0 turns dreams off)"),
    "run.log_every": (0, None, ""),
    "run.checkpoint_every": (0, None, ""),
    "run.threads": (0, None, " (0 picks the cores not used by env workers)"),
    "run.nonfinite_patience": (0, None, ""),
}
# ranges open at 0: a learning rate or slow critic rate of 0 does not train
OPEN_LOW = (
    "optim.lr",
    "optim.model_lr",
    "optim.actor_lr",
    "optim.critic_lr",
    "behavior.slow_critic_rate",
)
BETAS = ("optim.beta1", "optim.beta2")  # in [0, 1): a beta of 1 never forgets
# sizes far above any DreamerV3 setting (400m: deter 12288), which would exhaust memory
# (or, for the train ratio, loop on updates) instead of training
LIMIT = 1 << 16
LIMITS: dict[str, float] = {
    **{f"model.{k}": LIMIT for k, t in ModelConfig.__annotations__.items() if t == "int"},
    "run.batch_size": LIMIT,
    "run.batch_length": LIMIT,
    "behavior.horizon": LIMIT,
    "replay.chunk": LIMIT,
    "run.train_ratio": 1e6,
}
# the encoder's four halvings end at 4x4 and the decoder's four doublings start there
IMAGE_SIZES = range(48, 257, 16)  # 4 halvings to a 3x3..16x16 map, as the 2024 code asserts
# auto/on/off keys: YAML and OmegaConf read a bare on/off/true/false as a bool
SWITCHES = ("run.compile",)
# keys a resumed run cannot change: its checkpoint and replay would not fit them
STRUCTURAL = ("size", "model", "ablation", "env.id", "env.image_size", "env.pixels")
# the tables above by name; STRUCTURAL may name whole sections, the others name values
TABLES: dict[str, Iterable[str]] = {
    "CHOICES": CHOICES,
    "POSITIVE": POSITIVE,
    "RANGES": RANGES,
    "OPEN_LOW": OPEN_LOW,
    "BETAS": BETAS,
    "LIMITS": LIMITS,
    "SWITCHES": SWITCHES,
    "STRUCTURAL": STRUCTURAL,
}
SECTION_TABLES = ("STRUCTURAL",)


def _closest(key: str, options: list[str]) -> str:
    leaf = key.split(".")[-1]
    close = difflib.get_close_matches(key, options, n=3, cutoff=0.5)
    close += [o for o in options if o.split(".")[-1] == leaf and o not in close]
    if not close:
        close = difflib.get_close_matches(leaf, options, n=3, cutoff=0.3)
    return ", ".join(close[:3]) if close else "`reverie config` lists every key"


def config_fields(cls: type = Config, prefix: str = "") -> dict[str, bool]:
    """Every dotted key of the dataclass tree `cls`, mapped to whether it is a section (a
    nested dataclass) rather than a value: {'seed': False, 'env': True, 'env.id': False, ...}."""
    fields: dict[str, bool] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, kind = prefix + f.name, hints[f.name]
        section = isinstance(kind, type) and dataclasses.is_dataclass(kind)
        fields[key] = section
        if section:
            fields.update(config_fields(kind, key + "."))
    return fields


def check_table_keys(
    tables: Mapping[str, Iterable[str]], sections: Collection[str] = SECTION_TABLES
) -> None:
    """Every key of every table names a field of `Config`: a value field, or a section too
    for the tables named in `sections`. A typo would silently drop its check, so it is a
    ConfigError naming the table, the key and the closest real keys (raised at import)."""
    fields = config_fields()
    values = [k for k, section in fields.items() if not section]
    for name, table in tables.items():
        allowed = list(fields) if name in sections else values
        for key in table:
            if key not in allowed:
                raise ConfigError(
                    f"config table {name} names {key!r}, which is not a "
                    f"{'field' if name in sections else 'value field'} of Config; "
                    f"closest: {_closest(key, allowed)}"
                )


check_table_keys(TABLES)


def train_fill(run: RunConfig | DictConfig) -> int:
    """Replay steps before the first update: `run.train_fill`, by default one batch's worth
    of steps (batch_size * batch_length, 1024 at the defaults), as in the 2024 code."""
    return run.train_fill or run.batch_size * run.batch_length


def _load_yaml(name: str) -> DictConfig:
    text = resources.files("reverie.configs").joinpath(name).read_text()
    cfg = OmegaConf.create(text)
    assert isinstance(cfg, DictConfig), name  # the packaged presets are mappings
    return cfg


SIZES = _load_yaml("sizes.yaml")
DOMAINS = _load_yaml("domains.yaml")


def default_config() -> DictConfig:
    cfg = OmegaConf.structured(Config)
    OmegaConf.set_struct(cfg, True)
    OmegaConf.set_struct(cfg.env.kwargs, False)  # free-form: passed to the env constructor
    return cfg


def all_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        path = f"{prefix}{str(k)}"  # str(): a key may be any DictKeyType (as before)
        if isinstance(v, DictConfig):
            keys.extend(all_keys(v, path + "."))
        else:
            keys.append(path)
    return keys


def parse_overrides(overrides: list[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (e.g. run.train_ratio=64)")
        key, value = item.split("=", 1)
        if not key.strip() or "" in key.split("."):
            raise ConfigError(
                f"override {item!r} has a malformed key {key!r}: keys are dotted names such "
                "as run.train_ratio (`reverie config` lists every key)"
            )
        if "${" in value:
            raise ConfigError(
                f"override {item!r} holds an interpolation ${{...}}, which reverie does not "
                "resolve: give the value itself"
            )
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except Exception:  # noqa: BLE001 - OmegaConf's errors, and YAML's for a value like '='
        pass
    for i in range(len(overrides)):  # name the first override that does not parse
        try:
            OmegaConf.from_dotlist(list(overrides[: i + 1]))
        except Exception as e:  # noqa: BLE001 - as above
            problem = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(
                f"cannot parse override {overrides[i]!r} ({problem}); quote a string value "
                "that holds YAML syntax, e.g. key='a: b'"
            ) from None
    raise AssertionError("unreachable: the overrides parsed one by one")


def _nested(flat: dict[str, Any]) -> DictConfig:
    """{'run.steps': 5} -> {'run': {'steps': 5}}, the values taken as they are (a flag's
    string is not read as YAML: `--env gym:` stays the string 'gym:')."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # 'run=1' and 'run.steps=2' both given
                raise ConfigError(f"config key {key!r} is set both as a value and a section")
            node = child
        if isinstance(value, str):
            value = value.replace("${", "\\${")  # a literal string, not an interpolation
        node[leaf] = value
    cfg = OmegaConf.create(tree)
    assert isinstance(cfg, DictConfig)
    return cfg


def _value_key_above(key: str, options: list[str]) -> str | None:
    """'env.id.gym' -> 'env.id': the single-value key that a mapping was given to."""
    parts = key.split(".")
    prefixes = (".".join(parts[:i]) for i in range(1, len(parts)))
    return next((p for p in prefixes if p in options), None)


def merge(cfg: DictConfig, *others: DictConfig | dict) -> DictConfig:
    """Merge into the typed config, turning OmegaConf errors into ConfigErrors."""
    options = all_keys(cfg)
    for other in others:
        other = other if isinstance(other, DictConfig) else OmegaConf.create(other)
        for key in all_keys(other):
            if key not in options and not key.startswith("env.kwargs."):
                leaf = _value_key_above(key, options)
                if leaf is not None:  # YAML read `env.id=gym:` or `x={a: 1}` as a mapping
                    raise ConfigError(
                        f"bad value for {leaf!r}: a mapping ({key[len(leaf) + 1 :]}: ...) "
                        f"where a single value goes; quote a value that ends in ':' or holds "
                        f"': ', e.g. {leaf}='a: b'"
                    )
                raise ConfigError(
                    f"unknown config key {key!r}; closest valid keys: {_closest(key, options)}"
                )
        try:
            merged = OmegaConf.merge(cfg, other)
        except ConfigKeyError as e:
            raise ConfigError(
                f"unknown config key {e.full_key!r}; closest valid keys: "
                f"{_closest(str(e.full_key), options)}"
            ) from None
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", "?")
            msg = f"bad value for {key!r}: {e.msg if hasattr(e, 'msg') else e}".splitlines()[0]
            raise ConfigError(f"{msg}; `reverie config` shows each key's current value") from None
        assert isinstance(merged, DictConfig)  # merged into a DictConfig
        cfg = merged
    return cfg


PAPER = "paper"  # --size paper: the domain's paper_size


def size_preset(name: str) -> DictConfig:
    if name not in SIZES:
        raise ConfigError(
            f"unknown size {name!r}; valid sizes: {', '.join(map(str, SIZES.keys()))}, "
            f"or {PAPER!r} for the size the paper runs the domain at"
        )
    return OmegaConf.create({"model": SIZES[name]})


PRESET_BY_SUITE = {"dmc": "dmc_proprio"}  # suites whose default preset has another name


def domain_preset(env_id: str, preset: str = "") -> DictConfig:
    """The paper's settings: the named `preset`, else the one of `env_id`'s suite
    ('dmc:walker_walk' -> 'dmc_proprio', 'atari:pong' -> 'atari', 'crafter' -> 'crafter')."""
    if preset and preset not in DOMAINS:
        raise ConfigError(
            f"unknown preset {preset!r}; valid presets: {', '.join(map(str, DOMAINS.keys()))}"
        )
    return DOMAINS[preset_key(env_id, preset)]


def preset_key(env_id: str, preset: str = "") -> str:
    """The name of the domain preset a run uses: `preset`, else its env suite's (gym's
    for a suite without one)."""
    if preset:
        return preset
    suite = env_id.split(":", 1)[0] if ":" in env_id else env_id
    suite = PRESET_BY_SUITE.get(suite, suite)
    return suite if suite in DOMAINS else "gym"


def _check_range(key: str, value: Any) -> None:
    low, high, hint = RANGES.get(key, (None, None, ""))
    if key in POSITIVE and (value is None or value <= 0):
        raise ConfigError(f"bad value {value!r} for {key!r}; it must be > 0{hint}")
    if key in BETAS and not 0 <= value < 1:
        raise ConfigError(f"bad value {value!r} for {key!r}; it must be in [0, 1)")
    if low is not None and high is not None:
        lo = "(" if key in OPEN_LOW else "["
        if not (low < value if key in OPEN_LOW else low <= value) or value > high:
            raise ConfigError(
                f"bad value {value!r} for {key!r}; it must be in {lo}{low}, {high}]{hint}"
            )
    elif low is not None and value < low:
        raise ConfigError(f"bad value {value!r} for {key!r}; it must be >= {low}{hint}")
    limit = LIMITS.get(key)
    if limit is not None and value > limit:
        raise ConfigError(
            f"bad value {value!r} for {key!r}; it must be <= {limit:g}, far above any "
            "DreamerV3 setting (a typo?)"
        )


def validate(cfg: DictConfig) -> None:
    for key, options in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in options:
            raise ConfigError(f"bad value {value!r} for {key!r}; choose one of {options}")
    for key in all_keys(cfg):
        value = OmegaConf.select(cfg, key)
        if key.startswith("env.kwargs."):
            continue  # free-form: the env's constructor checks them
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"bad value {value!r} for {key!r}; it must be a finite number")
        if key in POSITIVE or key in RANGES or key in LIMITS or key in BETAS:
            _check_range(key, value)
    env_id = str(cfg.env.id)
    if not env_id.strip():
        raise ConfigError("env.id is empty; pass an env id, e.g. --env gym:CartPole-v1")
    if any(not part.strip() for part in env_id.split(":")):
        raise ConfigError(
            f"env id {env_id!r} has an empty part; ids are suite:task or a Gymnasium id, "
            "e.g. gym:CartPole-v1 (`reverie envs` lists the suites)"
        )
    size = cfg.env.image_size
    if not (isinstance(size, int) and size in IMAGE_SIZES):
        raise ConfigError(
            f"bad value {size!r} for 'env.image_size'; the image encoder halves the frame 4 "
            "times to a map of 3x3 to 16x16, so it takes a multiple of 16 from 48 to 256: "
            "64 (most presets) or 96 (Atari, ProcGen)"
        )
    if cfg.run.cudagraphs and cfg.run.compile == "off":
        raise ConfigError(
            "run.cudagraphs=true replays the compiled update as CUDA graphs, but "
            "run.compile=off compiles nothing: use run.compile=on (or auto)"
        )
    if cfg.model.action_minstd > cfg.model.action_maxstd:
        raise ConfigError(
            f"model.action_minstd={cfg.model.action_minstd} is above "
            f"model.action_maxstd={cfg.model.action_maxstd}; the minimum must be <= the maximum"
        )
    if cfg.behavior.retnorm_low >= cfg.behavior.retnorm_high:
        raise ConfigError(
            f"behavior.retnorm_low={cfg.behavior.retnorm_low} is not below "
            f"behavior.retnorm_high={cfg.behavior.retnorm_high}; the low percentile must be "
            "below the high one"
        )
    for blocks in ("blocks", "decoder_blocks"):
        if cfg.model.deter % cfg.model[blocks]:
            raise ConfigError(
                f"model.deter={cfg.model.deter} is not divisible by "
                f"model.{blocks}={cfg.model[blocks]}"
            )
    for key in ("size", "paper_size"):
        if cfg[key] not in SIZES:
            raise ConfigError(
                f"unknown {key} {cfg[key]!r}; valid sizes: {', '.join(map(str, SIZES.keys()))}"
            )
    if cfg.preset and cfg.preset not in DOMAINS:
        raise ConfigError(
            f"unknown preset {cfg.preset!r}; valid presets: {', '.join(map(str, DOMAINS.keys()))}"
        )


def make_config(
    overrides: list[str] | None = None, base: DictConfig | None = None, **flags: Any
) -> DictConfig:
    """Defaults <- size preset <- domain preset <- flags <- dotted overrides.

    `flags` are top-level shortcuts of the CLI (size, seed, logdir) or dotted keys.
    `base` replaces the defaults, e.g. the config stored in a logdir.
    """
    try:
        return _make_config(overrides, base, **flags)
    except OmegaConfBaseException as e:  # e.g. an interpolation `${...}` that does not resolve
        key = getattr(e, "full_key", None) or "?"
        problem = str(getattr(e, "msg", None) or e or type(e).__name__).splitlines()[0]
        raise ConfigError(
            f"bad value for {key!r}: {problem}; `reverie config` shows each key's current value"
        ) from None


def _make_config(
    overrides: list[str] | None = None, base: DictConfig | None = None, **flags: Any
) -> DictConfig:
    user = parse_overrides(overrides or [])
    flat = {k: v for k, v in flags.items() if v is not None}
    flag_cfg = _nested(flat)
    if base is not None:
        return _finish(merge(default_config(), base, flag_cfg, user))
    cfg = default_config()
    # size and env may come from flags or overrides; presets go under both
    probe = OmegaConf.merge(
        OmegaConf.create({"env": {"id": cfg.env.id}, "preset": cfg.preset}), flag_cfg, user
    )
    domain = domain_preset(str(probe.env.id), str(probe.preset or ""))
    probe = OmegaConf.merge(
        OmegaConf.create({"size": cfg.size, "paper_size": cfg.paper_size}), domain, flag_cfg, user
    )
    size = str(probe.paper_size) if str(probe.size) == PAPER else str(probe.size)
    cfg = merge(cfg, size_preset(size), domain, flag_cfg, user, {"size": size})
    return _finish(cfg)


def _finish(cfg: DictConfig) -> DictConfig:
    for key in SWITCHES:
        value = str(OmegaConf.select(cfg, key)).lower()
        OmegaConf.update(cfg, key, {"true": "on", "false": "off"}.get(value, value))
    validate(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


# what a domain preset fixes of its protocol (the paper's, for the paper's domains): a run
# that changes one is not comparable to the preset's published scores
PROTOCOL = ("run.train_ratio", "env.action_repeat")


def preset_name(cfg: DictConfig) -> str:
    """The domain preset `cfg` runs under (`preset`, else its env suite's)."""
    return preset_key(str(cfg.env.id), str(cfg.preset or ""))


def protocol_departures(cfg: DictConfig) -> dict[str, tuple[Any, Any]]:
    """The PROTOCOL keys where `cfg` differs from its domain preset: key -> (the run's
    value, the preset's)."""
    reference = merge(default_config(), domain_preset(str(cfg.env.id), str(cfg.preset or "")))
    found = {}
    for key in PROTOCOL:
        mine, theirs = OmegaConf.select(cfg, key), OmegaConf.select(reference, key)
        if mine != theirs:
            found[key] = (mine, theirs)
    return found


def protocol_note(cfg: DictConfig) -> str | None:
    """One line for a run that leaves its preset's protocol, None for one that keeps it."""
    found = protocol_departures(cfg)
    if not found:
        return None
    what = ", ".join(f"{k}={v:g} (preset: {p:g})" for k, (v, p) in found.items())
    return (
        f"warning: {what} leaves the {preset_name(cfg)} preset's protocol: this run's scores "
        "are not comparable to the published ones for the domain"
    )


def size_note(cfg: DictConfig) -> str:
    """Whether the run's model size is the one the paper's code uses for its domain."""
    if cfg.size == cfg.paper_size:
        return f"size {cfg.size}, the paper's for this domain"
    return (
        f"size {cfg.size}, not the paper's: its code runs this domain at {cfg.paper_size} "
        f"(--size {PAPER})"
    )


def typed(cfg: DictConfig | Config) -> Config:
    """The config as its dataclasses, converted once at a module boundary: compiled code
    reads their fields as constants (OmegaConf nodes it would trace)."""
    if isinstance(cfg, Config):
        return cfg
    out = OmegaConf.to_object(cfg)
    assert isinstance(out, Config), type(out)
    return out


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)


def from_yaml(text: str) -> DictConfig:
    cfg = OmegaConf.create(text)
    assert isinstance(cfg, DictConfig)  # a saved config is a mapping
    return cfg
