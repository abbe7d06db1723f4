"""A full disk: the run stops with one line saying what to free, nothing on disk is torn,
and the same command resumes once there is space again.

On a real size-limited filesystem (a tmpfs mounted here, where the test may mount) and,
everywhere, through a shim that makes every write of reverie's own files fail with ENOSPC
once a byte budget is spent (`reverie.files.write` is the one place they all go through).
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import reverie.files
from reverie import checkpoint
from reverie.cli import main
from reverie.replay import read_chunk

from .conftest import TINY

pytestmark = pytest.mark.slow  # every test here takes a second or more

FAST = [*TINY, "run.train_fill=16", "run.train_ratio=16", "replay.chunk=16"]
FAST += ["run.checkpoint_every=0", "run.log_every=0"]


def train(logdir: Path, steps: int) -> int:
    return main(["train", "--logdir", str(logdir), "--steps", str(steps), *FAST])


def assert_intact(logdir: Path) -> int:
    """Every file a reader opens parses: the checkpoint, each replay chunk, each metrics
    line; no temporary file is left. Returns the checkpoint's step."""
    state = checkpoint.load_latest(logdir)
    assert state is not None
    assert all(read_chunk(p) is not None for p in (logdir / "replay").glob("*.npz"))
    for line in (logdir / "metrics.jsonl").read_text().splitlines():
        json.loads(line)
    assert not list(logdir.rglob(".*.tmp*"))
    return state["counters"]["step"]


def check_stop_and_resume(logdir: Path, capsys, make_room) -> None:
    assert train(logdir, 10**5) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("reverie: error: no space left on the device of"), err
    assert "free some space" in err[-1] and "rerun the same command" in err[-1]
    assert not [line for line in err if "Traceback" in line]
    stopped_at = assert_intact(logdir)
    make_room()
    assert train(logdir, stopped_at + 20) == 0
    assert assert_intact(logdir) == stopped_at + 20


def test_full_disk_through_the_write_shim(tmp_path, capsys, monkeypatch):
    budget = {"left": 0}
    real_write = reverie.files.write

    def limited(file, data):
        size = len(data.encode() if isinstance(data, str) else bytes(data))
        if budget["left"] is not None:
            if size > budget["left"]:
                raise OSError(errno.ENOSPC, "No space left on device")
            budget["left"] -= size
        real_write(file, data)

    logdir = tmp_path / "run"
    train(logdir, 10)  # a first checkpoint
    capsys.readouterr()
    budget["left"] = 2_000_000  # a few checkpoints and chunks, then full
    for module in ("reverie.files", "reverie.logger"):
        monkeypatch.setattr(f"{module}.write", limited)

    def make_room():
        budget["left"] = None

    check_stop_and_resume(logdir, capsys, make_room)


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    tool = shutil.which("mount")
    if tool is None:
        pytest.skip("no mount command")
    made = subprocess.run(
        [tool, "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_on_a_small_tmpfs(small_tmpfs, capsys):
    logdir = small_tmpfs / "run"
    filler = small_tmpfs / "filler"
    filler.write_bytes(b"\0" * (2 * 2**20))  # leave room for about two megabytes of run

    check_stop_and_resume(logdir, capsys, lambda: filler.unlink())
