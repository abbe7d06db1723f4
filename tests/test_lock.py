"""One trainer per logdir: a second one is refused with one line naming the first; a kill -9
leaves no stale lock; readers need no lock."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from reverie import checkpoint
from reverie.build import open_trainer
from reverie.cli import main
from reverie.lock import LOCK, LogdirInUseError
from reverie.policy import load_policy
from reverie.run_dir import resolve_config

from .conftest import TINY, cli_train_command, train_tiny

FAST = [*TINY, "run.train_fill=16", "run.train_ratio=32", "run.checkpoint_every=0.5"]


def test_a_second_trainer_in_one_logdir_is_refused_until_the_first_closes(tmp_path):
    first = open_trainer(resolve_config(tmp_path, FAST), tmp_path)
    try:
        with pytest.raises(LogdirInUseError, match=f"pid {os.getpid()} on host"):
            open_trainer(resolve_config(tmp_path, FAST), tmp_path)
    finally:
        first.close()
    open_trainer(resolve_config(tmp_path, FAST), tmp_path).close()  # free again


def wait_for(condition, seconds: float, proc) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_running_cli_trainer_blocks_another_and_kill_9_frees_the_logdir(tmp_path, capsys):
    train_tiny(tmp_path, 20, FAST)  # a checkpoint for the readers below
    proc = subprocess.Popen(
        cli_train_command(tmp_path, 10**6, *FAST[len(TINY) :]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lock = tmp_path / LOCK
        wait_for(lambda: f"pid {proc.pid}" in lock.read_text(), 60, proc)
        before = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.yaml")}
        capsys.readouterr()
        assert main(["train", "--logdir", str(tmp_path), "--steps", "30", *FAST]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("reverie: error: logdir")
        assert f"in use by another trainer (pid {proc.pid} on host" in err[0]
        assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.yaml")} == before
        # readers take no lock
        assert load_policy(tmp_path).act_spec.dim == 2
        assert main(["eval", "--logdir", str(tmp_path), "--episodes", "1"]) == 0
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    # the OS released the lock with the process: no stale lock to remove by hand
    resumed = checkpoint.load_latest(tmp_path)["counters"]["step"]
    _, summary = train_tiny(tmp_path, resumed + 5, FAST)
    assert summary["step"] == resumed + 5
