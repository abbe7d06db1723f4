"""SIGKILL a real training run ten times in a row (at random moments, and exactly during an
update, a checkpoint write and a replay chunk write), rerun the same command each time.

What must hold, after every kill:
- the rerun resumes from the newest complete checkpoint: stderr says `resumed ... at step S`
  with S the step of the checkpoint on disk, S > 0 from the first kill on;
- resume steps never decrease (here they strictly increase: each run is killed only after it
  wrote a checkpoint of its own), and each resumed run's first line in metrics.jsonl is past
  its resume step, its steps non-decreasing: metrics go back at most to the last checkpoint;
- every replay chunk file on disk is intact (writes are atomic; a kill leaves at most a
  temporary file, removed on the next start), and `Replay.load` neither crashes nor skips;
- updates follow the train ratio at every checkpoint: no burst of catch-up updates;
- a final rerun finishes (also with corrupt chunks it must skip) and `reverie eval` loads it.
"""

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from reverie import checkpoint
from reverie.cli import main
from reverie.replay import Replay, read_chunk

from .conftest import cli_train_command

pytestmark = pytest.mark.slow  # every test here takes a second or more

CHUNK, RATIO = 32, 64
PER_UPDATE = 4 * 8  # run.batch_size x run.batch_length of TINY
KILLS = ["random", "update", "checkpoint", "chunk", "random"] * 2
SEED = int(os.environ.get("REVERIE_KILL_SEED", "0"))


def command(logdir: Path, steps: int) -> list[str]:
    return cli_train_command(
        logdir,
        steps,
        f"run.train_ratio={RATIO}",
        f"replay.chunk={CHUNK}",
        "run.checkpoint_every=1.0",
        "run.log_every=0.3",
        pause_points=True,
    )


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(
                f"run exited ({proc.returncode}) waiting for {what}: {proc.stderr.read()}"
            )
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def mtime(path: Path) -> int:
    # a checkpoint write renames checkpoint.pt away just before the new one takes its place
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def counters(logdir: Path) -> dict:
    return checkpoint.load_latest(logdir)["counters"]


def check_ratio(c: dict) -> None:
    """Updates at a checkpoint are what the train ratio asks for since training started."""
    due = int((c["step"] - c["train_start"]) * RATIO / PER_UPDATE) + 1
    assert abs(c["updates"] - due) <= 1, c


def check_replay(logdir: Path) -> int:
    files = sorted((logdir / "replay").glob("*.npz"))
    assert files and all(read_chunk(p) is not None for p in files)
    replay = Replay(10**6, CHUNK, logdir / "replay")
    steps = replay.load()
    assert replay.skipped_files == [] and steps > 0
    return steps


def test_sigkill_ten_times_then_resume(tmp_path):
    rng = random.Random(SEED)
    logdir, marker = tmp_path / "run", tmp_path / "marker"
    ckpt, metrics = logdir / checkpoint.CHECKPOINT, logdir / "metrics.jsonl"
    resumes: list[int] = []  # the step each run resumed at (0: fresh start)
    starts: list[int] = []  # metrics.jsonl lines before each run
    for k, point in enumerate(KILLS):
        resume = counters(logdir)["step"] if ckpt.exists() else 0
        resumes.append(resume)
        starts.append(len(metrics.read_text().splitlines()) if metrics.exists() else 0)
        marker.write_text("disarmed")  # pause_points.py waits for the test to remove it
        env = {**os.environ, "REVERIE_TEST_PAUSE_FILE": str(marker)}
        if point != "random":
            env["REVERIE_TEST_PAUSE"] = point
        before = mtime(ckpt)
        proc = subprocess.Popen(
            command(logdir, 10**6),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # a checkpoint of this run first, so that each kill has something to lose
            wait_for(lambda b=before: mtime(ckpt) > b, 60, f"kill {k}: a checkpoint", proc)
            if point == "random":
                time.sleep(rng.uniform(0.0, 1.5))
            else:
                marker.unlink()  # armed: the next `point` writes it and sleeps 0.5 s
                wait_for(marker.exists, 30, f"kill {k}: the {point} pause point", proc)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            err = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL, err
        torn = {"checkpoint": logdir.glob(".*.tmp*"), "chunk": logdir.glob("replay/.*.tmp*")}
        if point in torn:  # the kill landed in the middle of writing that file
            assert list(torn[point]), (k, point)
        if k:
            assert f"resumed {logdir} at step {resume} (" in err, (k, point, err)
        c = counters(logdir)
        assert c["step"] > resume, (k, point, c, resume)
        check_ratio(c)
        assert check_replay(logdir) >= c["step"] - CHUNK  # chunks hold the checkpoint's steps

    # corrupt two chunk files as a crash of the disk might: the rerun skips them and goes on
    final = counters(logdir)["step"]
    files = sorted((logdir / "replay").glob("*.npz"))
    files[-1].write_bytes(files[-1].read_bytes()[:200])
    raw = bytearray(files[0].read_bytes())
    raw[100] ^= 0xFF
    files[0].write_bytes(bytes(raw))
    starts.append(len(metrics.read_text().splitlines()))
    resumes.append(final)
    out = subprocess.run(command(logdir, final + 40), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"resumed {logdir} at step {final} (" in out.stderr
    assert "skipped unreadable replay chunks" in out.stderr
    assert str(files[-1]) in out.stderr and str(files[0]) in out.stderr
    assert f"done: {final + 40} env steps" in out.stdout
    check_ratio(counters(logdir))
    assert not list(logdir.rglob(".*.tmp*")), "temporary files of killed runs are left"

    # metrics: per run, steps go forward from past the run's resume step
    lines = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert resumes == sorted(resumes) and resumes[1] > 0
    for k, (resume, start) in enumerate(zip(resumes, starts)):
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        steps = lines[start:end]
        assert steps, f"run {k} logged nothing"
        assert steps[0] > resume and steps == sorted(steps), (k, resume, steps[:5])

    assert main(["eval", "--logdir", str(logdir), "--episodes", "1"]) == 0
