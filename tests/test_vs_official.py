"""benchmarks/vs_official.py's reading of finished reverie runs (--reverie-runs): the
committed time-to-475 seeds come back with their episodes, updates and seed, and a run of
another setup is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "results" / "time_to_475_default_2026-12-07"


def test_finished_runs_are_read_as_the_reverie_side(tmp_path):
    vs = load_benchmark("vs_official")
    out = tmp_path / "vs"
    seeds = [RUNS / "seed1", RUNS / "seed2"]
    assert (
        vs.main(["--train-ratio", "64", "--reverie-runs", *map(str, seeds), "--out", str(out)]) == 0
    )
    data = json.loads((out / "series.json").read_text())
    assert sorted(data["runs"]["reverie"]) == ["1", "2"] and data["runs"]["official"] == {}
    for folder in seeds:
        result = json.loads((folder / "run.json").read_text())["result"]
        run = data["runs"]["reverie"][str(result["seed"])]
        # the same numbers learning.py recorded for the run, computed here from the metrics
        assert run["summary"]["episodes"] == result["episodes"]
        assert run["summary"]["updates"] == result["updates"]
        assert run["summary"]["best_mean10"] == pytest.approx(result["best_mean"], abs=0.05)
        assert 0 < run["wall"] <= result["wall"] + 1
    assert (out / "returns.png").read_bytes()[:4] == b"\x89PNG"


def test_a_run_of_another_setup_is_refused(tmp_path):
    vs = load_benchmark("vs_official")
    argv = ["--train-ratio", "512", "--reverie-runs", str(RUNS / "seed0"), "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="ratio.*not the"):
        vs.main(argv)
