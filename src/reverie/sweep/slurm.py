"""Running a sweep's cells through submitit: one job per cell on a Slurm cluster
(`--executor slurm`), or in local processes with submitit's LocalExecutor
(`--executor submitit-local`, the same path without a cluster). Needs the `sweep` extra.

A job runs the cell's `reverie train` command as a child process and records the cell's
state itself, so the state is right when the launcher is gone. On preemption or timeout
submitit calls `CellJob.checkpoint`: the child gets SIGTERM, saves a checkpoint, and the
job is requeued with the same command, which resumes the cell.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reverie.config import ConfigError
from reverie.errors import MissingExtraError, install_command
from reverie.sweep import cells as cellfiles
from reverie.sweep.grid import Cell, command
from reverie.sweep.progress import summary_line
from reverie.sweep.runner import Outcome
from reverie.sweep.spec import SweepSpec

EXECUTORS = ("slurm", "submitit-local")
FOLDER = ".submitit"  # under the root: submitit's pickles and the jobs' own logs
STOP_WAIT = 120.0  # seconds a cell gets to save its checkpoint when its job is preempted


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise MissingExtraError(
            f"--executor slurm and submitit-local need submitit: {install_command('sweep')}"
        ) from None
    return submitit


class CellJob:
    """One cell as a submitit job (pickled to the job's process; the child is not)."""

    def __init__(self, root: str, cell: Cell, argv: list[str], steps: int, executor: str):
        self.root, self.cell, self.argv = root, cell, argv
        self.steps, self.executor = steps, executor
        self._proc: subprocess.Popen | None = None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_proc"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _proc=None)

    def __call__(self) -> str:
        logdir = Path(self.root) / self.cell.name
        state = cellfiles.read_state(logdir)
        if cellfiles.finished(logdir, self.steps, state):
            state.status, state.step = "done", max(state.step, self.steps)
            cellfiles.write_state(logdir, state)
            return "done"
        state.executor, state.job_id = self.executor, os.environ.get("SLURM_JOB_ID", "")
        self._proc = cellfiles.launch(self.argv, logdir, state)
        returncode = self._proc.wait()
        return cellfiles.conclude(logdir, state, returncode, self.steps).status

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Preempted or timed out: stop the cell with a checkpoint, then requeue this job."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
        return _submitit().helpers.DelayedSubmission(CellJob(**self._args()))

    def _args(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "cell": self.cell,
            "argv": self.argv,
            "steps": self.steps,
            "executor": self.executor,
        }


def parse_parameters(items: list[str]) -> dict[str, Any]:
    """['slurm_partition=gpu', 'timeout_min=240'] -> submitit's update_parameters kwargs."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--slurm {item!r} is not key=value (e.g. --slurm timeout_min=240)")
        out[key.strip()] = _number(value.strip())
    return out


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def make_executor(kind: str, root: Path, parameters: dict[str, Any]) -> Any:
    submitit = _submitit()
    folder = root / FOLDER / "%j"
    if kind == "slurm":
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    elif kind == "submitit-local":
        executor = submitit.LocalExecutor(folder=folder)
    else:
        raise ConfigError(f"unknown executor {kind!r}; choose local, {', '.join(EXECUTORS)}")
    try:
        executor.update_parameters(**parameters)
    except (ValueError, TypeError) as e:
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"--slurm: {problem}") from None
    return executor


def run_submitit(
    root: str | Path,
    spec: SweepSpec,
    cells: list[Cell],
    kind: str,
    parameters: dict[str, Any] | None = None,
    wait: bool = True,
    report: Callable[[str], None] = print,
    poll: float = 2.0,
    status_every: float = 60.0,
) -> Outcome:
    """Submit a job for each unfinished cell that has none queued or running, then (with
    `wait`) wait for all of them, reporting progress."""
    root = Path(root)
    executor = make_executor(kind, root, dict(parameters or {}))
    outcome, todo = Outcome(), []
    for cell in cells:
        logdir = root / cell.name
        state = cellfiles.read_state(logdir)
        if cellfiles.finished(logdir, spec.steps, state):
            outcome.skipped.append(cell.name)
        elif state.status in ("queued", "running") and _job_alive(root, logdir, state):
            report(f"{cell.name}: a job of it is already {state.status}; left as it is")
        else:
            todo.append(cell)
    if outcome.skipped:
        report(f"{len(outcome.skipped)} of {len(cells)} cells already finished")
    jobs = {cell.name: _submit(executor, root, spec, cell, kind) for cell in todo}
    cellfiles.write_run_file(root, kind, len(jobs))
    report(f"submitted {len(jobs)} job(s) ({kind}); submitit's files: {root / FOLDER}")
    if wait:
        _wait(root, spec, cells, jobs, outcome, report, poll, status_every)
    return outcome


def _submit(executor: Any, root: Path, spec: SweepSpec, cell: Cell, kind: str) -> Any:
    """Queue the cell's job. Its state says 'queued' before the job exists (the job alone
    writes it from then on); the job id goes to its own file."""
    logdir = root / cell.name
    state = cellfiles.read_state(logdir)
    state.status, state.executor, state.pid, state.error = "queued", kind, None, ""
    cellfiles.write_state(logdir, state)
    job = executor.submit(CellJob(str(root), cell, command(spec, cell, root), spec.steps, kind))
    cellfiles.write_job(logdir, kind, str(job.job_id))
    return job


def _job_alive(root: Path, logdir: Path, state: cellfiles.CellState) -> bool:
    """Whether the cell's job still runs or waits; Slurm is asked (through submitit)."""
    job = cellfiles.read_job(logdir)
    if job.get("executor") != "slurm":
        return cellfiles.busy(logdir, state)
    try:
        found = _submitit().SlurmJob(folder=root / FOLDER / "%j", job_id=str(job["job_id"]))
        return found.state in ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING")
    except Exception:  # noqa: BLE001 - no sacct here, or an unknown job: submit it again
        return False


def _wait(
    root: Path,
    spec: SweepSpec,
    cells: list[Cell],
    jobs: dict[str, Any],
    outcome: Outcome,
    report: Callable[[str], None],
    poll: float,
    status_every: float,
) -> None:
    pending, last = dict(jobs), time.time()
    while pending:
        for name, job in list(pending.items()):
            if not job.done():
                continue
            del pending[name]
            state = cellfiles.read_state(root / name)
            if state.status == "done":
                outcome.done.append(name)
                report(f"done  {name} ({state.step} steps)")
            else:
                error = state.error or _job_error(job)
                outcome.failed[name] = error
                report(f"FAILED {name}: {error}")
        if time.time() - last >= status_every:
            last = time.time()
            report(summary_line(root, spec, cells))
        if pending:
            time.sleep(poll)


def _job_error(job: Any) -> str:
    try:
        error = job.exception()
    except Exception as e:  # noqa: BLE001 - submitit could not read the job's result
        error = e
    if error is None:
        return "the job ended without finishing the cell"
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
