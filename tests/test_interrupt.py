"""A run stopped by SIGTERM or Ctrl-C saves a checkpoint, and rerunning resumes it."""

import json
import signal
import subprocess
import time

import pytest
import torch

from reverie import checkpoint

from .conftest import cli_train_command

pytestmark = pytest.mark.slow  # every test here takes a second or more


def test_sigterm_saves_checkpoint_and_rerun_resumes(tmp_path):
    logdir = tmp_path / "run"
    cmd = cli_train_command(logdir, 100000, "run.train_ratio=64", "run.checkpoint_every=100000")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = logdir / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (
        not metrics.exists() or metrics.read_text().count("episode/return") < 3
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "rerun the same command" in err
    state = checkpoint.load_latest(logdir)
    stopped_at = state["counters"]["step"]
    last_logged = max(json.loads(x)["step"] for x in metrics.read_text().splitlines())
    assert stopped_at >= last_logged > 0  # nothing logged was lost

    cmd[cmd.index("100000")] = str(stopped_at + 20)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"resumed {logdir} at step {stopped_at}" in out.stderr
    assert f"done: {stopped_at + 20} env steps" in out.stdout
    assert torch.is_tensor(checkpoint.load_latest(logdir)["agent"]["agent"]["updates"])
