"""`reverie train --dry-run`: whether a run fits, before it runs. The model's parameter
count, the replay's RAM at capacity, the peak memory of one update, updates/s and the
wall time to the step budget, from the run's own config, env, device and update path.

Nothing is written: the env is made once (its specs, and a few hundred steps timed), the
agent is built from the config alone, and the updates run on batches sampled from an
in-memory replay of those steps (no logdir, lock, checkpoint or metrics).

How the update is measured:
- two small eager updates (batch 1 and `PROBE_BATCHES[-1]` of `PROBE_LENGTH` steps, after
  an untimed one) give an upper bound for the full batch: the time in proportion (the
  optimiser step does not grow with the batch), the memory beyond 16 bytes per parameter
  (weights, gradients, two optimiser moments) in proportion;
- if that bound fits in memory and takes at most `MAX_UPDATE_S`, full updates run on the
  path the run uses (compiled when `run.compile` compiles), warm-up first, then as many
  as fit in `seconds`; their rate is the run's updates/s;
- otherwise updates/s and memory are estimated by a straight line through the two probes
  (time and peak memory against replayed steps) extended to the full batch, said to be
  estimated (the bound instead where the line does not rise: noise).

Peak memory: on CUDA `torch.cuda.max_memory_allocated` over the updates; on a CPU the
process's peak resident memory during them (Linux's VmHWM, reset before them) above its
resident memory before the agent was built: parameters, gradients, optimiser state and
activations.
"""

from __future__ import annotations

import ctypes
import math
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from reverie.accel import cpu_kind, learner_threads, pick_device, resolve_compile
from reverie.agent import Agent
from reverie.build import make_replay
from reverie.clocks import TrainRatio
from reverie.config import from_yaml, make_config, to_yaml, train_fill
from reverie.coordinator import Coordinator
from reverie.envs import describe_spaces, env_kwargs, make_env, uses_workers
from reverie.perf import tune_malloc
from reverie.replay import Chunk, Replay
from reverie.specs import replay_length, replay_step, to_numpy
from reverie.trainer import seed_everything

PROBE_LENGTH = 8  # trained steps per sequence of the small probe updates
PROBE_BATCHES = (1, 4)  # their sequences: far enough apart that the line beats the noise
MAX_UPDATE_S = 60.0  # a full update predicted slower than this is estimated, not run
MEMORY_SHARE = 0.8  # of the memory available, what a full update may be predicted to take
ACT_STEPS = 300  # env steps timed with the policy (fewer if they take over ACT_SECONDS)
ACT_SECONDS = 10.0
MEASURE_SECONDS = 10.0  # how long full updates are timed, after their warm-up
GiB, MiB = 2**30, 2**20


# ------------------------------------------------------------------ arithmetic
def budget_updates(run: Any, steps: int, start: int = 0) -> int:
    """The updates the train ratio pays for from env step `start` to `steps`: training
    starts once replay holds `train_fill` steps (as `reverie.sweep.grid.cost` counts)."""
    return TrainRatio.from_run(run).budget(steps, train_fill(run), start)


def step_bytes(step: dict[str, np.ndarray]) -> dict[str, int]:
    """Bytes per replay step of each key of one env's step, as a replay chunk stores it."""
    chunk = Chunk(0, 0, 1)
    chunk.append(step)
    return {k: int(v.nbytes) for k, v in chunk.data.items()}


def size_text(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB"


def duration_text(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# ------------------------------------------------------------------ memory
class HostMemory:
    """Peak resident memory of this process (Linux: VmHWM, resettable; else ru_maxrss)."""

    def __init__(self) -> None:
        self.resettable = _proc_field("VmHWM") is not None and _clear_peak()
        self.base = self.current()
        self.method = (
            "peak resident memory during the timed updates (VmHWM, reset before them after "
            "malloc_trim) above the process's before the agent was built"
            if self.resettable
            else "the process's lifetime peak resident memory (ru_maxrss) above its "
            "memory before the agent was built"
        )

    def current(self) -> int:
        rss = _proc_field("VmRSS")
        return rss if rss is not None else _maxrss()

    def reset_peak(self) -> None:
        if self.resettable:
            _trim_heap()  # freed memory the heap keeps would count as resident
            _clear_peak()
            # the trim can also return memory freed since `base` was read (the env's)
            self.base = min(self.base, self.current())

    def peak(self) -> int:
        """Bytes above `base` at the peak since `reset_peak`."""
        hwm = _proc_field("VmHWM") if self.resettable else None
        return max(0, (hwm if hwm is not None else _maxrss()) - self.base)

    @staticmethod
    def available() -> int | None:
        return _proc_field("MemAvailable", "/proc/meminfo")

    @staticmethod
    def where() -> str:
        return "RAM"


class DeviceMemory:
    """Peak allocated memory of a CUDA device (torch.cuda.max_memory_allocated)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base = torch.cuda.memory_allocated(device)
        self.free = torch.cuda.mem_get_info(device)[0]
        self.method = "torch.cuda.max_memory_allocated over the timed updates"

    def reset_peak(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        torch.cuda.synchronize(self.device)
        return max(0, torch.cuda.max_memory_allocated(self.device) - self.base)

    def available(self) -> int | None:
        return self.free

    @staticmethod
    def where() -> str:
        return "GPU memory"


def _proc_field(name: str, path: str = "/proc/self/status") -> int | None:
    """A `Name: N kB` field of a /proc file, in bytes (None off Linux)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _clear_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident memory
        return True
    except OSError:
        return False


def _trim_heap() -> None:
    """Give the heap's free memory back to the OS (glibc's malloc_trim; no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _maxrss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# ------------------------------------------------------------------ the estimate
@dataclass
class Estimate:
    """What a dry run found; `lines()` says it."""

    env_id: str
    size: str
    device: str
    threads: int
    params: dict[str, int]
    key_bytes: dict[str, int]  # per replay step, by key
    capacity: int
    chunk: int
    num_envs: int
    steps: int  # the run's budget (run.steps)
    start: int  # env step it starts from (a resumed run's checkpoint)
    fill: int
    ratio: float
    batch: int  # sequences per update
    length: int  # trained steps per sequence
    updates: int  # for the remaining budget
    compiled: bool
    precision: str
    acting_s: float  # seconds per env step: policy, env step, replay add
    acted: int  # env steps timed
    updates_per_s: float = math.nan
    measured: bool = False  # updates/s and memory from full updates (else estimated)
    warmup: int = 0
    timed: int = 0
    first_update_s: float = math.nan  # the first full update (compiles, when compiled)
    peak_bytes: float = math.nan
    memory_method: str = ""
    memory_where: str = "RAM"
    note: str = ""  # why updates were not run at the full batch
    probes: list[tuple[int, float, int]] = field(default_factory=list)  # (steps, s, bytes)
    seconds: float = 0.0  # the dry run's own wall time

    @property
    def bytes_per_step(self) -> int:
        return sum(self.key_bytes.values())

    @property
    def replay_bytes(self) -> int:
        return self.capacity * self.bytes_per_step

    @property
    def compile_s(self) -> float:
        """The first update's extra time over a warm one (compilation), when compiled."""
        if not (self.compiled and self.measured) or self.updates == 0:
            return 0.0
        return max(0.0, self.first_update_s - 1 / self.updates_per_s)

    @property
    def update_s(self) -> float:
        return self.updates / self.updates_per_s if self.updates else 0.0

    @property
    def act_s(self) -> float:
        return max(0, self.steps - self.start) * self.acting_s

    @property
    def wall_s(self) -> float:
        return self.update_s + self.act_s + self.compile_s

    def lines(self) -> list[str]:
        p = self.params
        kinds = ", ".join(f"{k} {v:,} B" for k, v in self.key_bytes.items())
        held = min(self.capacity, self.steps)
        out = [
            f"run: {self.env_id}, size {self.size}, {self.device}, {self.threads} learner "
            f"thread(s), update {'compiled' if self.compiled else 'eager'}, {self.precision}",
            f"parameters: {p['total']:,} (world model {p['world_model']:,}, actor "
            f"{p['actor']:,}, critic {p['critic']:,})",
            f"replay bytes per step: {self.bytes_per_step:,} ({kinds})",
            f"replay RAM at capacity: {size_text(self.replay_bytes)} ({self.capacity:,} steps "
            f"x {self.bytes_per_step:,} B; the budget fills {held:,} steps: "
            f"{size_text(held * self.bytes_per_step)})",
        ]
        batch = f"batch {self.batch} x {self.length}"
        if math.isfinite(self.peak_bytes):
            how = "measured" if self.measured else "estimated"
            out.append(
                f"peak learner memory: {size_text(self.peak_bytes)} {self.memory_where} "
                f"({how}, one update at {batch}: {self.memory_method})"
            )
        else:
            out.append(f"peak learner memory: not measured ({self.note})")
        if self.measured:
            compile_note = (
                f"; compilation excluded: the first update took {self.first_update_s:.1f} s"
                if self.compiled
                else f"; the first update took {self.first_update_s:.2f} s"
            )
            out.append(
                f"updates/s: {self.updates_per_s:.3g} (measured over {self.timed} updates "
                f"after {self.warmup} warm-up, at {batch}{compile_note})"
            )
        elif math.isfinite(self.updates_per_s):
            out.append(
                f"updates/s: {self.updates_per_s:.3g} (estimated, not measured: {self.note}; "
                f"{self.probe_text()})"
            )
        else:
            out.append(f"updates/s: not measured ({self.note})")
        out.append(
            f"acting: {1 / self.acting_s:,.0f} env steps/s (policy step, env step and replay "
            f"add, measured over {self.acted} steps of 1 env in this process)"
        )
        from_text = f" from step {self.start:,}" if self.start else ""
        out.append(
            f"updates to the budget: {self.updates:,} (env steps {self.steps:,}{from_text}, "
            f"training from step {self.fill:,}, x train ratio {self.ratio:g} / "
            f"{self.batch * self.length:,} steps replayed per update)"
        )
        if math.isfinite(self.updates_per_s):
            parts = [
                f"updates {duration_text(self.update_s)}",
                f"acting {duration_text(self.act_s)}",
            ]
            if self.compiled and self.measured:
                parts.append(f"compilation once {duration_text(self.compile_s)}")
            basis = "" if self.measured else " (from the estimated updates/s)"
            extra = ""
            if self.num_envs > 1:
                extra = f"; {self.num_envs} envs: acting timed with 1, so an upper bound"
            out.append(
                f"estimated wall time: {duration_text(self.wall_s)}{basis} "
                f"({' + '.join(parts)}{extra})"
            )
        else:
            out.append("estimated wall time: unknown (updates/s not measured)")
        return out

    def probe_text(self) -> str:
        probes = " and ".join(
            f"{n} replayed steps {s:.2f} s, {size_text(m)}" for n, s, m in self.probes
        )
        return (
            f"eager updates of {probes}; the line through them extended to the batch's "
            f"{self.batch * self.length:,} steps"
        )


def estimate(
    cfg: DictConfig,
    start: int = 0,
    seconds: float | None = None,
    jobs: int = 1,
    say: Any = None,
) -> Estimate:
    """Measure what the run of `cfg` would take; nothing is written.

    :param start: the env step the run starts from (a resumed run's).
    :param seconds: how long to time full updates after their warm-up (MEASURE_SECONDS).
    :param jobs: runs sharing this machine's cores (a sweep's --jobs): the learner gets
        its share of them, as the run would.
    :param say: called with a progress line (e.g. print to stderr), or None.
    """
    began = time.perf_counter()
    tell = say or (lambda line: None)
    rc = cfg.run
    workers = cfg.env.num_envs if uses_workers(cfg.env) else 0
    threads = learner_threads(rc.threads, workers, jobs)
    tune_malloc()  # as open_trainer: same heap behaviour, same memory figures
    torch.set_num_threads(threads)
    seed_everything(cfg.seed)
    device = pick_device(rc.device)
    env = make_env(str(cfg.env.id), seed=cfg.seed, **env_kwargs(cfg.env))
    try:
        obs_spec, act_spec = describe_spaces(env)
        memory: HostMemory | DeviceMemory = (
            DeviceMemory(device) if device.type == "cuda" else HostMemory()
        )
        # eager first: the small probe updates take other batch shapes; replay in memory
        eager = make_config(["run.compile=off", "replay.save=false"], base=from_yaml(to_yaml(cfg)))
        agent = Agent(obs_spec, act_spec, eager, device)
        compiles = resolve_compile(str(rc.compile), device)
        seq_len = replay_length(rc, cfg.replay)
        tell(f"acting in {cfg.env.id} for up to {ACT_STEPS} steps")
        replay = make_replay(eager, Path(), Coordinator(), int(cfg.seed))  # as the run's
        acting_s, acted, first_step = act(agent, env, replay, seq_len + 1, int(cfg.seed))
    finally:
        env.close()
    device_text = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({cpu_kind()})"
    )
    est = Estimate(
        env_id=str(cfg.env.id),
        size=str(cfg.size),
        device=device_text,
        threads=threads,
        params=agent.param_count(),
        key_bytes=step_bytes(first_step),
        capacity=int(cfg.replay.capacity),
        chunk=int(cfg.replay.chunk),
        num_envs=int(cfg.env.num_envs),
        steps=int(rc.steps),
        start=int(start),
        fill=train_fill(rc),
        ratio=float(rc.train_ratio),
        batch=int(rc.batch_size),
        length=int(rc.batch_length),
        updates=budget_updates(rc, int(rc.steps), int(start)),
        compiled=compiles,
        precision="bf16 matmuls" if agent.precision == torch.bfloat16 else "fp32",
        acting_s=acting_s,
        acted=acted,
        memory_method=memory.method,
        memory_where=memory.where(),
    )
    seconds = MEASURE_SECONDS if seconds is None else seconds
    measure_updates(est, agent, replay, memory, cfg, compiles, seconds, tell)
    est.seconds = time.perf_counter() - began
    return est


def act(
    agent: Agent, env: Any, replay: Replay, min_steps: int, seed: int
) -> tuple[float, int, dict[str, np.ndarray]]:
    """Step one env with the agent's policy, storing each step in `replay` as the trainer
    does: (seconds per env step, steps, the first step as one env's replay step)."""
    obs, _ = env.reset(seed=seed)
    state, first, last, terminal = None, True, False, False
    reward = 0.0
    one: dict[str, np.ndarray] = {}
    steps, start = 0, time.perf_counter()
    while steps < max(min_steps, ACT_STEPS):
        if steps >= min_steps and time.perf_counter() - start > ACT_SECONDS:
            break
        batch = {k: np.asarray(v)[None] for k, v in obs.items()}
        flags = np.array([first]), np.array([last]), np.array([last and terminal])
        action, state = agent.policy({**batch, "is_first": flags[0]}, state)
        step = replay_step(batch, np.array([reward], np.float32), *flags, action, state)
        replay.add_batch(step, [0])
        if not one:
            one = {k: v[0] for k, v in step.items()}
        if last:
            obs, _ = env.reset()
            first, last, reward, terminal = True, False, 0.0, False
        else:
            obs, r, term, trunc, _ = env.step(action[0].float().cpu().numpy())
            reward, first, last, terminal = float(r), False, bool(term or trunc), bool(term)
        steps += 1
    return (time.perf_counter() - start) / steps, steps, one


def train_step(agent: Agent, replay: Replay, batch: int, length: int, context: int) -> None:
    """One update as `Trainer.train_step` runs it: sample, to the device, update, write the
    posterior latents back."""
    data, keys = replay.sample(batch, length)
    tensors = {k: torch.as_tensor(v, device=agent.device) for k, v in data.items()}
    _, latents = agent.update(tensors)
    replay.write_latents(keys, context, to_numpy(latents))  # reads them back: syncs


def measure_updates(
    est: Estimate,
    agent: Agent,
    replay: Replay,
    memory: HostMemory | DeviceMemory,
    cfg: DictConfig,
    compiles: bool,
    seconds: float,
    tell: Any,
) -> None:
    rc, context = cfg.run, int(cfg.replay.context)
    length = min(PROBE_LENGTH, int(rc.batch_length))
    full = int(rc.batch_size * rc.batch_length)
    fixed = 16 * est.params["total"]  # weights, gradients, two optimiser moments (fp32)
    available = memory.available()
    if available is not None and fixed > MEMORY_SHARE * available:
        est.note = (
            f"its parameters, gradients and optimiser moments alone (16 B per parameter: "
            f"{size_text(fixed)}) exceed {MEMORY_SHARE:.0%} of the {size_text(available)} "
            f"of {memory.where()} available"
        )
        est.peak_bytes = math.nan
        return
    sizes = " and ".join(map(str, PROBE_BATCHES))
    tell(f"timing small eager updates of {sizes} sequences of {length} steps")
    train_step(agent, replay, 1, length + context, context)  # untimed: optimiser state
    for b in PROBE_BATCHES:
        memory.reset_peak()
        t = time.perf_counter()
        train_step(agent, replay, b, length + context, context)
        est.probes.append((b * length, time.perf_counter() - t, memory.peak()))
    # an upper bound: the time whole (the optimiser step does not grow with the batch),
    # the memory beyond the parameters' state (activations) in proportion
    n2, t2, m2 = est.probes[-1]
    bound_s = t2 * full / n2
    bound_m = fixed + max(0.0, m2 - fixed) * full / n2
    too_big = available is not None and bound_m > MEMORY_SHARE * available
    if too_big or bound_s > MAX_UPDATE_S:
        predicted_s, predicted_m = line_through_probes(est.probes, full, bound_s, bound_m)
        est.note = (
            f"one update at the full batch would need about {size_text(predicted_m)} "
            f"(at most {size_text(bound_m)}) of the {size_text(available or 0)} of "
            f"{memory.where()} available"
            if too_big
            else f"one update at the full batch would take about {duration_text(predicted_s)}"
        )
        est.updates_per_s, est.peak_bytes = 1 / max(predicted_s, 1e-9), predicted_m
        return
    if compiles:
        agent.compile()
        tell("compiling the update (the first update compiles: minutes, or seconds cached)")
    batch, length_full = int(rc.batch_size), replay_length(rc, cfg.replay)
    t = time.perf_counter()
    train_step(agent, replay, batch, length_full, context)
    est.first_update_s = time.perf_counter() - t
    est.warmup = 3 if compiles else 2
    for _ in range(est.warmup - 1):
        train_step(agent, replay, batch, length_full, context)
    tell(f"timing full updates for {seconds:g} s")
    memory.reset_peak()
    count, t = 0, time.perf_counter()
    while count < 2 or (time.perf_counter() - t < seconds and count < 1000):
        train_step(agent, replay, batch, length_full, context)
        count += 1
    elapsed = time.perf_counter() - t
    est.peak_bytes = memory.peak()
    est.timed, est.updates_per_s, est.measured = count, count / elapsed, True


def line_through_probes(
    probes: list[tuple[int, float, int]], full: int, bound_s: float, bound_m: float
) -> tuple[float, float]:
    """Time and peak memory at `full` replayed steps on the line through the first and
    last probe (steps, seconds, bytes); the bound where the line does not rise."""
    (n1, t1, m1), (n2, t2, m2) = probes[0], probes[-1]
    slope_s, slope_m = (t2 - t1) / (n2 - n1), (m2 - m1) / (n2 - n1)
    seconds = t2 + slope_s * (full - n2) if slope_s > 0 else bound_s
    memory = m2 + slope_m * (full - n2) if slope_m > 0 else bound_m
    return min(seconds, bound_s), min(memory, bound_m)


def run_start(logdir: str | Path | None) -> int:
    """The env step a run in `logdir` would resume from (0 for a new one); reads only."""
    if logdir is None or not Path(logdir).is_dir():
        return 0
    from reverie.run_dir import checkpoint_step

    return checkpoint_step(logdir) or 0
