"""One cell on disk: its state file (ROOT/<cell>/sweep-cell.json, written atomically), its
log (train.log: the output of every attempt), and whether it reached its step budget."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from reverie.files import atomic_write

STATE = "sweep-cell.json"
RUN_FILE = "sweep-run.json"  # ROOT/: the launcher of the sweep's latest run
JOB = "sweep-job.json"  # the submitit job of a queued cell, written by the launcher
LOG = "train.log"
HEADER = "==== reverie sweep:"
IN_USE = "is in use by another trainer"
STATUSES = ("pending", "queued", "running", "done", "failed", "interrupted")


@dataclass
class CellState:
    status: str = "pending"  # one of STATUSES
    attempts: int = 0
    pid: int | None = None  # the `reverie train` process (local) or the job's (submitit)
    host: str = ""
    started: float | None = None  # the current or last attempt
    ended: float | None = None
    start_step: int = 0  # env steps when the attempt started
    step: int = 0  # env steps when it ended
    returncode: int | None = None
    error: str = ""  # the last error line of a failed attempt
    fatal: bool = False  # failed on its input (exit 2): retrying would fail again
    executor: str = "local"  # local | slurm | submitit-local
    job_id: str = ""


def write_run_file(root: str | Path, executor: str, jobs: int) -> None:
    """Who runs the sweep in `root` now (pid, host, executor, jobs), for `--status`."""
    info = {"pid": os.getpid(), "host": socket.gethostname(), "executor": executor}
    info.update(jobs=jobs, started=time.time())
    atomic_write(Path(root) / RUN_FILE, json.dumps(info).encode())


def read_state(logdir: str | Path) -> CellState:
    """The cell's state; a missing or unreadable file reads as pending."""
    path = Path(logdir) / STATE
    try:
        data = json.loads(path.read_text())
        known = {f.name for f in fields(CellState)}
        return CellState(**{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError):
        return CellState()


def write_state(logdir: str | Path, state: CellState) -> None:
    Path(logdir).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(logdir) / STATE, json.dumps(asdict(state), indent=1).encode())


def alive(state: CellState) -> bool:
    """Whether the cell's process still runs (on another host: taken on trust)."""
    if state.status not in ("running", "queued") or state.pid is None:
        return False
    return pid_alive(state.pid, state.host)


def pid_alive(pid: int, host: str = "") -> bool:
    if host and host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _not_zombie(pid)


def write_job(logdir: str | Path, executor: str, job_id: str) -> None:
    info = {"executor": executor, "job_id": job_id, "host": socket.gethostname()}
    atomic_write(Path(logdir) / JOB, json.dumps(info).encode())


def read_job(logdir: str | Path) -> dict:
    try:
        info = json.loads((Path(logdir) / JOB).read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def busy(logdir: str | Path, state: CellState) -> bool:
    """Whether a process runs the cell, or (queued) a job waits to: a local job's process
    is checked; a Slurm job is taken on trust here (the launcher asks Slurm)."""
    if state.status == "running":
        return alive(state)
    if state.status != "queued":
        return False
    job = read_job(logdir)
    if job.get("executor") == "submitit-local":
        job_id = str(job.get("job_id", ""))
        return job_id.isdigit() and pid_alive(int(job_id), str(job.get("host", "")))
    return bool(job.get("job_id"))


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def tail(path: str | Path, size: int = 65536) -> str:
    """The last `size` bytes of a text file ('' when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def metrics_step(logdir: str | Path) -> int:
    """The env step of the newest line of the cell's metrics.jsonl (0 without one)."""
    for line in reversed(tail(Path(logdir) / "metrics.jsonl", 8192).splitlines()):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a crash, or the cut first line of the tail
    return 0


def last_attempt(logdir: str | Path) -> str:
    """The log of the cell's last attempt."""
    text = tail(Path(logdir) / LOG)
    return text.rsplit(HEADER, 1)[-1] if HEADER in text else text


def last_error(logdir: str | Path) -> str:
    """The line that says why the last attempt failed: `reverie: error: ...`, else the last
    line of a traceback, else its last line."""
    lines = [line.strip() for line in last_attempt(logdir).splitlines()[1:] if line.strip()]
    for line in reversed(lines):
        if line.startswith("reverie: error:"):
            return line
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", line):
            return line
    return lines[-1] if lines else "(no output)"


def done_step(logdir: str | Path) -> int | None:
    """The env steps of `reverie train`'s last line 'done: N env steps, ...', printed after
    its final checkpoint; None when the last attempt did not print it."""
    found = re.findall(r"^done: (\d+) env steps", last_attempt(logdir), re.MULTILINE)
    return int(found[-1]) if found else None


def finished(logdir: str | Path, steps: int, state: CellState | None = None) -> bool:
    """Whether the cell reached its budget: its state says so, else its checkpoint does."""
    state = state or read_state(logdir)
    if state.status == "done" and state.step >= steps:
        return True
    from reverie.run_dir import checkpoint_step

    try:
        step = checkpoint_step(logdir)
    except Exception:  # noqa: BLE001 - an unreadable checkpoint: the cell runs again
        return False
    return step is not None and step >= steps


def launch(
    command: list[str],
    logdir: str | Path,
    state: CellState,
    env: dict[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
) -> subprocess.Popen:
    """Start an attempt of the cell: a header line in its log, the process in its own session
    (a Ctrl-C meant for the sweep does not reach it twice), and the state 'running'."""
    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    state.attempts += 1
    host = socket.gethostname()
    with open(logdir / LOG, "a") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"{HEADER} attempt {state.attempts} on {host} at {stamp}: ")
        log.write(shlex.join(command) + "\n")
        log.flush()
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=preexec,
            start_new_session=True,
        )
    state.status, state.pid, state.host = "running", proc.pid, host
    state.started, state.ended, state.returncode, state.error = time.time(), None, None, ""
    state.start_step, state.fatal = metrics_step(logdir), False
    write_state(logdir, state)
    return proc


def conclude(logdir: str | Path, state: CellState, returncode: int, steps: int) -> CellState:
    """Record how an attempt ended: done (its budget reached), interrupted (stopped by a
    signal, resumable), or failed with its last error line (fatal when it was the input)."""
    state.returncode, state.ended, state.pid = returncode, time.time(), None
    reached = done_step(logdir)
    state.step = reached if reached is not None else metrics_step(logdir)
    if returncode == 0 and (reached or 0) >= steps:
        state.status, state.error = "done", ""
    elif returncode in (130, -signal.SIGTERM, -signal.SIGINT):
        state.status, state.error = "interrupted", ""
    else:
        state.status = "failed"
        state.error = last_error(logdir) if returncode >= 0 else _signal_line(returncode)
        state.fatal = returncode == 2 and IN_USE not in state.error
    write_state(logdir, state)
    return state


def _signal_line(returncode: int) -> str:
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
