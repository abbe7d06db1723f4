"""benchmarks/gpu_check.sh on a machine without CUDA: its dry path runs its steps on the
CPU (the CUDA-graph case's refusal, a short DMC run and its curve)
and ends in time; and run.cudagraphs is refused off CUDA in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reverie.accel import CompiledMethod, resolve_cudagraphs
from reverie.config import ConfigError, make_config
from reverie.envs import suite_installed

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU path is the real check")
@pytest.mark.skipif(not suite_installed("dmc"), reason="the check's run is a DMC task")
def test_the_gpu_check_takes_its_dry_path_without_cuda(tmp_path):
    env = {
        **os.environ,
        "OUT": str(tmp_path),
        "PY": sys.executable,
        # the eager and compiled cases are throughput.py's own (minutes on a CPU); the
        # CUDA-graph case goes through the same steps to its refusal
        "MODES": "cudagraphs",
    }
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    log = (tmp_path / "gpu_check.txt").read_text()
    assert "GPU: none (dry path)" in log
    assert "## eager" not in log and "## compiled" not in log  # MODES picks the cases
    graphs = log.split("## cudagraphs")[1].split("## ")[0]
    assert "1m vector: run.cudagraphs=true needs a CUDA device" in graphs
    assert "Traceback" not in log
    assert "env steps" in log.split("## DMC proprio")[1]
    assert (tmp_path / "dmc_walker_walk.png").stat().st_size > 0
    assert not (tmp_path / "dmc_walker_walk" / "replay").exists()  # results stay small
    assert log.rstrip().endswith("done (dry path: 1)")


def test_cuda_graphs_are_refused_off_cuda_and_set_inductors_option():
    assert resolve_cudagraphs(False, torch.device("cpu")) is False
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        resolve_cudagraphs(True, torch.device("cpu"))
    with pytest.raises(ConfigError, match="run.compile=on"):
        make_config(["run.cudagraphs=true", "run.compile=off"])
    graphed = CompiledMethod(lambda x: x + 1, "f", cudagraphs=True)
    plain = {"fallback_random": True, "cpp.dynamic_threads": True}
    assert graphed.options == {**plain, "triton.cudagraphs": True}
    assert CompiledMethod(lambda x: x + 1, "f").options == plain
