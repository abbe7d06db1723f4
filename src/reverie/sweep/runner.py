"""Running a sweep's cells on this machine, `jobs` at once.

Each slot owns an equal share of the cores (the process is pinned with sched_setaffinity,
and `run.threads=0`, the default, reads that affinity) and, on a machine with GPUs, one
GPU through CUDA_VISIBLE_DEVICES (slot i gets GPU i mod the GPU count, so jobs > GPUs puts
several small runs on each). A cell's process gets SIGTERM when the sweep dies, however it
dies (PR_SET_PDEATHSIG on Linux), and saves a checkpoint; a SIGTERM or Ctrl-C to the sweep
is passed on once to every cell, which the sweep then waits for.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reverie.config import ConfigError
from reverie.sweep import cells as cellfiles
from reverie.sweep.grid import Cell, command
from reverie.sweep.progress import summary_line
from reverie.sweep.spec import SweepSpec

PR_SET_PDEATHSIG = 1


@dataclass
class Slot:
    index: int
    cores: list[int]
    gpu: str | None  # CUDA_VISIBLE_DEVICES for its cells; None leaves the variable alone


@dataclass
class Running:
    cell: Cell
    proc: subprocess.Popen
    state: cellfiles.CellState
    slot: Slot


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # cell -> its error line
    interrupted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # finished before this run
    stopped: bool = False  # the sweep was stopped by a signal


def available_cores() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def detect_gpus(setting: str) -> list[str] | None:
    """'auto': the visible GPUs (none: None, the variable left alone); 'none': [] (cells
    see no GPU); '0,1': those."""
    setting = setting.strip()
    if setting == "none":
        return []
    if setting != "auto":
        ids = [g.strip() for g in setting.split(",")]
        if not all(g.isdigit() for g in ids):
            raise ConfigError(f"--gpus {setting!r}: give auto, none, or GPU indices like 0,1")
        return ids
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [g.strip() for g in visible.split(",") if g.strip()]
        return ids or None
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [str(i) for i in range(count)] or None


def plan_slots(jobs: int, cores: list[int], gpus: list[str] | None) -> list[Slot]:
    """`jobs` slots, each with len(cores) // jobs cores (at least one; slots share cores
    when jobs > cores) and a GPU in turn."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, not {jobs}")
    share = max(1, len(cores) // jobs)
    slots = []
    for i in range(jobs):
        start = (i * share) % len(cores)
        own = [cores[(start + k) % len(cores)] for k in range(share)]
        gpu = None if gpus is None else (gpus[i % len(gpus)] if gpus else "")
        slots.append(Slot(i, sorted(set(own)), gpu))
    return slots


def _libc_prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: a killed sweep leaves its cells running


def _preexec(cores: list[int], parent: int, prctl: Callable[..., int] | None) -> Callable[[], None]:
    def run() -> None:  # in the child, between fork and exec
        if cores and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cores)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:  # the sweep died before prctl took effect
                os.kill(os.getpid(), signal.SIGTERM)

    return run


class LocalRunner:
    """Runs the unfinished cells of a sweep; `run()` returns when none is left running."""

    def __init__(
        self,
        root: str | Path,
        spec: SweepSpec,
        cells: list[Cell],
        jobs: int = 1,
        gpus: str = "auto",
        retries: int = 1,
        report: Callable[[str], None] = print,
        status_every: float = 60.0,
        poll: float = 0.5,
    ):
        if retries < 0:
            raise ConfigError(f"--retries must be >= 0, not {retries}")
        self.root, self.spec, self.cells = Path(root), spec, cells
        self.slots = plan_slots(jobs, available_cores(), detect_gpus(gpus))
        self.retries, self.report = retries, report
        self.status_every, self.poll = status_every, poll
        self.running: dict[int, Running] = {}
        self.tries: dict[str, int] = {}
        self.stopping = False
        self.signalled: set[int] = set()  # pids sent SIGTERM
        self.prctl = _libc_prctl()

    def run(self) -> Outcome:
        outcome = Outcome()
        todo = self._unfinished(outcome)
        cellfiles.write_run_file(self.root, "local", len(self.slots))
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        last_status = time.time()
        try:
            while todo or self.running:
                if self.stopping:
                    self._signal_all()  # one started as the signal came in, too
                else:
                    self._fill(todo, outcome)
                self._reap(todo, outcome)
                if time.time() - last_status >= self.status_every:
                    last_status = time.time()
                    self.report(summary_line(self.root, self.spec, self.cells))
                if self.stopping and not self.running:
                    break
                time.sleep(self.poll)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        outcome.stopped = self.stopping
        outcome.interrupted += [c.name for c in todo if c.name not in outcome.interrupted]
        return outcome

    # ------------------------------------------------------------------ steps
    def _unfinished(self, outcome: Outcome) -> list[Cell]:
        todo = []
        for cell in self.cells:
            logdir = self.root / cell.name
            if cellfiles.finished(logdir, self.spec.steps):
                outcome.skipped.append(cell.name)
                self._mark_done(logdir)
            else:
                todo.append(cell)
        if outcome.skipped:
            self.report(f"{len(outcome.skipped)} of {len(self.cells)} cells already finished")
        return todo

    def _mark_done(self, logdir: Path) -> None:
        state = cellfiles.read_state(logdir)
        if state.status != "done":
            state.status, state.step, state.error = "done", self.spec.steps, ""
            cellfiles.write_state(logdir, state)

    def _fill(self, todo: list[Cell], outcome: Outcome) -> None:
        for slot in self.slots:
            if slot.index in self.running:
                continue
            cell = self._next(todo, outcome)
            if cell is None:
                return
            self._start(cell, slot)

    def _next(self, todo: list[Cell], outcome: Outcome) -> Cell | None:
        """The first cell of `todo` that no process (a previous sweep's) still runs."""
        for cell in list(todo):
            logdir = self.root / cell.name
            state = cellfiles.read_state(logdir)
            if cellfiles.busy(logdir, state):
                continue  # still saving its checkpoint after a killed sweep: later
            todo.remove(cell)
            if cellfiles.finished(logdir, self.spec.steps, state):
                outcome.skipped.append(cell.name)
                self._mark_done(logdir)
                continue
            return cell
        return None

    def _start(self, cell: Cell, slot: Slot) -> None:
        logdir = self.root / cell.name
        env = dict(os.environ, OMP_NUM_THREADS=str(len(slot.cores)))
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        state = cellfiles.read_state(logdir)
        state.executor, state.job_id = "local", ""
        argv = command(self.spec, cell, self.root)
        preexec = _preexec(slot.cores, os.getpid(), self.prctl)
        proc = cellfiles.launch(argv, logdir, state, env=env, preexec=preexec)
        self.tries[cell.name] = self.tries.get(cell.name, 0) + 1
        self.running[slot.index] = Running(cell, proc, state, slot)
        where = f"cores {_ranges(slot.cores)}"
        if slot.gpu:
            where += f", GPU {slot.gpu}"
        resumed = f", resuming at step {state.start_step}" if state.start_step else ""
        self.report(f"start {cell.name} ({where}{resumed})")

    def _reap(self, todo: list[Cell], outcome: Outcome) -> None:
        for index, run in list(self.running.items()):
            returncode = run.proc.poll()
            if returncode is None:
                continue
            del self.running[index]
            logdir = self.root / run.cell.name
            state = cellfiles.conclude(logdir, run.state, returncode, self.spec.steps)
            self._settle(run.cell, state, todo, outcome)

    def _settle(
        self, cell: Cell, state: cellfiles.CellState, todo: list[Cell], outcome: Outcome
    ) -> None:
        name = cell.name
        if state.status == "done":
            outcome.done.append(name)
            self.report(f"done  {name} ({state.step} steps, {_took(state)})")
        elif self.stopping:
            outcome.interrupted.append(name)
            self.report(f"stopped {name} at step {state.step} (rerun the sweep to resume it)")
        elif cellfiles.IN_USE in state.error:
            todo.append(cell)  # another trainer held the logdir: try again later
        elif not state.fatal and self.tries.get(name, 0) <= self.retries:
            todo.append(cell)
            self.report(f"retry {name} after: {state.error or state.status} (resumes)")
        else:
            outcome.failed[name] = state.error
            self.report(f"FAILED {name}: {state.error}")

    def _stop(self, signum: int, frame: object) -> None:
        if self.stopping:
            self.report(f"still waiting for {len(self.running)} cell(s) to save a checkpoint")
            return
        self.stopping = True
        self.report(
            f"stopping: {len(self.running)} running cell(s) save a checkpoint and stop; "
            "rerun the same command to resume"
        )
        self._signal_all()

    def _signal_all(self) -> None:
        for run in list(self.running.values()):
            if run.proc.pid not in self.signalled:
                self.signalled.add(run.proc.pid)
                try:
                    run.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass


def _ranges(cores: list[int]) -> str:
    if not cores:
        return "-"
    if cores == list(range(cores[0], cores[-1] + 1)) and len(cores) > 1:
        return f"{cores[0]}-{cores[-1]}"
    return ",".join(map(str, cores))


def _took(state: cellfiles.CellState) -> str:
    if state.started is None or state.ended is None:
        return "?"
    return f"{state.ended - state.started:.0f}s"
