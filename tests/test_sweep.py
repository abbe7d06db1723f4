"""`reverie sweep`, `reverie reproduce`, `reverie score` (reverie.sweep).

- the spec from the command line: seeds, grids, tasks, steps, each error one ConfigError line;
  a root holds one spec (another is refused naming the difference), sweep.yaml read back;
- the cells: tasks x grid x seeds, distinct logdirs, each one's `reverie train` command;
  `--dry-run` prints them and writes nothing;
- a local sweep with --jobs 2 stopped by SIGTERM, and one whose process is SIGKILLed, then
  rerun: finished cells are not run again, interrupted ones resume from their checkpoint;
  a finished sweep reruns nothing; `reverie score` writes its table and plot;
- a cell that fails on its input (exit 2) is reported with its error line and not retried;
- the submitit path with its local executor;
- the statistics (IQM, mean, median, stratified bootstrap) against scipy and numpy;
- the paper's suites (`reverie reproduce`) and the published scores a sweep is scored against
  (budgets in env steps: Atari100k's tables count frames), on fake finished sweeps
  (metrics.jsonl written by hand: no training).
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml

from reverie import dry_run
from reverie.cli import main
from reverie.clocks import TrainRatio
from reverie.config import ConfigError
from reverie.envs import suite_installed
from reverie.run_dir import checkpoint_step
from reverie.sweep import published, stats
from reverie.sweep.cells import (
    HEADER,
    IN_USE,
    LOG,
    CellState,
    conclude,
    last_attempt,
    last_error,
    metrics_step,
    pid_alive,
    read_state,
    write_state,
)
from reverie.sweep.grid import cell_config, command, cost, expand
from reverie.sweep.runner import detect_gpus, plan_slots
from reverie.sweep.score import score_sweep, to_markdown
from reverie.sweep.spec import (
    SPEC_FILE,
    bind_root,
    load_spec,
    make_spec,
    parse_grid,
    parse_seeds,
    parse_tasks,
)
from reverie.sweep.suites import reproduce_spec

from .conftest import TINY

CARTPOLE = "gym:CartPole-v1"
RUN = ["--train-ratio", "4", *TINY]  # each cell: a tiny model, one update per 8 env steps
SRC = Path(__file__).parents[1] / "src" / "reverie"


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def sweep_argv(root: Path, *args: str) -> list[str]:
    return ["sweep", "--root", str(root), *args, *RUN]


def headers(logdir: Path) -> int:
    return (logdir / LOG).read_text().count(HEADER)


# ------------------------------------------------------------------ the spec
def test_seeds_are_a_count_a_list_or_a_range():
    assert parse_seeds("3") == (0, 1, 2) and parse_seeds(2) == (0, 1)
    assert parse_seeds("0,4") == (0, 4)
    assert parse_seeds("3-5") == (3, 4, 5)
    assert parse_seeds(" 0-1, 7 ") == (0, 1, 7)
    for bad, says in [
        ("0", "takes 1 to 1000 seeds"),
        ("10000000000", "takes 1 to 1000 seeds"),  # a typo, not billions of runs
        ("0-4000000000", "at most 1000 seeds"),
        ("5-3", "runs backwards"),
        ("a", "cannot read 'a'"),
        ("", "cannot read"),
        ("-1", "cannot read"),
        ("1.5", "cannot read"),
        ("1,0-2", "more than once"),
        (f"0,{2**32}", "<="),
    ]:
        assert says in one_line_error(parse_seeds, bad), bad


def test_grids_and_tasks_are_checked():
    grid = parse_grid(["run.train_ratio=32, 64", "model.units=64,128,256"])
    assert grid == (("run.train_ratio", ("32", "64")), ("model.units", ("64", "128", "256")))
    assert parse_grid([]) == ()
    for bad in (["run.train_ratio"], ["=1,2"], ["k="], ["k=1,,2"], ["k=1,1"], ["k=1", "k=2"]):
        assert "--grid" in one_line_error(parse_grid, bad), bad
    assert parse_tasks("gym:CartPole-v1, bsuite:catch/0") == ("gym:CartPole-v1", "bsuite:catch/0")
    assert parse_tasks(["a", "b,c"]) == ("a", "b", "c")
    for bad in ("", "a,,b", "a,"):
        assert "empty env id" in one_line_error(parse_tasks, bad), bad
    assert "names a more than once" in one_line_error(parse_tasks, "a,b,a")


def test_make_spec_needs_a_positive_budget():
    for steps in (0, -5, None):
        assert "--steps must be a positive" in one_line_error(make_spec, CARTPOLE, "1", steps)
    assert "--train-ratio" in one_line_error(make_spec, CARTPOLE, "1", 10, train_ratio=0.0)
    spec = make_spec(CARTPOLE, "0,4", 300, train_ratio=8.0, grid=["k=1,2"], overrides=["a=b"])
    assert spec.seeds == (0, 4) and spec.steps == 300 and spec.grid == (("k", ("1", "2")),)


def test_a_root_holds_one_spec(tmp_path, capsys):
    spec = make_spec(CARTPOLE, "2", 300, train_ratio=8.0, grid=["run.batch_size=4,5"])
    root = bind_root(tmp_path / "r", spec)
    assert load_spec(root) == spec  # read back equal, floats, tuples and grid included
    assert bind_root(root, spec) == root  # the same spec again: accepted
    other = make_spec(CARTPOLE, "2", 600, train_ratio=8.0, grid=["run.batch_size=4,5"])
    message = one_line_error(bind_root, root, other)
    assert "holds another sweep (steps 300 there, 600 here)" in message
    seeds = one_line_error(bind_root, root, make_spec(CARTPOLE, "3", 300, train_ratio=8.0))
    assert "seeds (0, 1) there, (0, 1, 2) here" in seeds
    (tmp_path / "file").write_text("x")
    assert "is a file" in one_line_error(bind_root, tmp_path / "file", spec)
    # through the command line: one line, status 2, the stored spec unchanged
    before = (root / SPEC_FILE).read_bytes()
    capsys.readouterr()
    assert main(sweep_argv(root, "--tasks", CARTPOLE, "--seeds", "2", "--steps", "600")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reverie: error:") and "steps 300 there" in err[0]
    assert (root / SPEC_FILE).read_bytes() == before


def test_load_spec_refuses_a_non_sweep_dir_and_a_corrupt_spec(tmp_path):
    assert "is not a sweep root" in one_line_error(load_spec, tmp_path)
    for text in ("tasks: [", "", "- a\n- b\n", "version: 1\nseeds: [0]\n", "version: 7\n"):
        (tmp_path / SPEC_FILE).write_text(text)
        assert "is corrupt" in one_line_error(load_spec, tmp_path), text
    spec = make_spec(CARTPOLE, "1", 300)
    (tmp_path / SPEC_FILE).write_text(yaml.safe_dump({**spec.to_dict(), "colour": "red"}))
    assert "unknown keys ['colour']" in one_line_error(load_spec, tmp_path)


# ----------------------------------------------------------------- the cells
def test_cells_cross_tasks_seeds_and_grid_values():
    tasks, seeds = ["gym:CartPole-v1", "bsuite:catch/0"], "0,4"
    grid = ["run.train_ratio=8,16", "model.units=16,32,64"]
    spec = make_spec(tasks, seeds, 300, size="12m", train_ratio=4.0, grid=grid, overrides=["a=b"])
    cells = expand(spec)
    assert len(cells) == len(tasks) * len(spec.seeds) * 2 * 3
    assert len({c.name for c in cells}) == len(cells)
    assert {(c.task, c.seed, c.variant) for c in cells} == {
        (t, s, (("run.train_ratio", r), ("model.units", u)))
        for t in tasks
        for s in spec.seeds
        for r in ("8", "16")
        for u in ("16", "32", "64")
    }
    assert len({c.group for c in cells}) == len(cells) // len(spec.seeds)  # seeds share one
    for cell in cells:
        argv = command(spec, cell, "/R")
        flag = lambda name, a=argv: a[a.index(name) + 1]  # noqa: E731
        assert argv[1:4] == ["-m", "reverie.cli", "train"]
        assert flag("--env") == cell.task and flag("--seed") == str(cell.seed)
        assert flag("--steps") == "300" and flag("--size") == "12m"
        assert flag("--train-ratio") == "4" and flag("--logdir") == f"/R/{cell.name}"
        assert cell.name.endswith(f"/seed{cell.seed}")
        assert argv[-3:] == ["a=b", *cell.overrides()]  # the grid's values come last
    assert "would share the logdir" in one_line_error(
        expand, make_spec("gym:a/b,gym:a-b", "1", 300)
    )


def test_size_paper_is_passed_as_the_size_it_stands_for():
    spec = make_spec("dmc:walker_walk", "1", 300, size="paper")
    cell = expand(spec)[0]
    size = command(spec, cell, "/R")[command(spec, cell, "/R").index("--size") + 1]
    assert size == str(cell_config(spec, cell).size) and size != "paper"


@pytest.mark.slow
@pytest.mark.slow
def test_dry_run_prints_one_command_per_cell_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dry_run, "MEASURE_SECONDS", 0.5)  # the timing is not tested here
    root = tmp_path / "root"
    argv = sweep_argv(root, "--tasks", f"{CARTPOLE},gym:Pendulum-v1", "--seeds", "0,4")
    assert main([*argv, "--steps", "300", "--grid", "run.batch_size=4,5", "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    cells = expand(
        make_spec([CARTPOLE, "gym:Pendulum-v1"], "0,4", 300, grid=["run.batch_size=4,5"])
    )
    assert out[0].startswith(f"reverie: {len(cells)} cells (2 tasks x 2 seeds x grid)")
    lines = [line for line in out if line.startswith("reverie train ")]
    assert len(lines) == len(cells)
    assert sum("measured once for its cells" in line for line in out) == 4  # one per variant
    for line, cell in zip(lines, cells):
        assert f"--logdir {root / cell.name} " in line and f"--env {cell.task} " in line
        assert " # " in line  # a line to paste into a shell, its estimate a comment
    assert out[-1].startswith("reverie: estimated wall time") and not root.exists()


def test_cost_counts_the_updates_the_train_ratio_pays_for():
    spec = make_spec(CARTPOLE, "0,1", 5000, train_ratio=32.0, grid=["run.batch_size=4,8"])
    cells = expand(spec)
    plan = cost(spec, cells)
    # batch_length 64: after a fill of one batch, (5000 - 256) * 32 / 256 = 593 updates at
    # batch size 4 and (5000 - 512) * 32 / 512 = 280.5 -> 280 at 8; two seeds each
    assert plan == {"cells": 4, "env_steps": 20000, "updates": 2 * (593 + 280), "sizes": ["1m"]}
    ratio = TrainRatio.from_run(cell_config(spec, cells[0]).run)  # the trainer's clock
    assert ratio.paid(5000 - 256) == 593 and ratio.owed(5000 - 256, 0) == 594  # + the first


def test_slots_share_the_cores_and_take_gpus_in_turn():
    slots = plan_slots(2, [0, 1, 2, 3], None)
    assert [s.cores for s in slots] == [[0, 1], [2, 3]] and [s.gpu for s in slots] == [None] * 2
    slots = plan_slots(3, [0, 1], ["0", "1"])
    assert all(len(s.cores) == 1 for s in slots) and [s.gpu for s in slots] == ["0", "1", "0"]
    assert [s.gpu for s in plan_slots(2, [0], [])] == ["", ""]  # --gpus none: no GPU
    assert "--jobs" in one_line_error(plan_slots, 0, [0], None)
    assert detect_gpus("none") == [] and detect_gpus("0, 2") == ["0", "2"]
    assert "--gpus" in one_line_error(detect_gpus, "x,1")


def write_attempt(logdir: Path, *lines: str) -> None:
    logdir.mkdir(parents=True, exist_ok=True)
    with open(logdir / LOG, "a") as f:
        f.write(f"{HEADER} attempt on host at now: reverie train\n" + "\n".join(lines) + "\n")


BAD_KEY, BOOM = "reverie: error: unknown key a", "RuntimeError: boom"


def test_an_attempt_ends_done_interrupted_or_failed_with_its_error_line(tmp_path):
    cases = [  # returncode, log lines, status, error, fatal
        (0, ["done: 300 env steps, 67 updates"], "done", "", False),
        (130, ["reverie: interrupted"], "interrupted", "", False),
        (-signal.SIGTERM, [], "interrupted", "", False),
        (2, ["x", "reverie: error: unknown key a", "y"], "failed", BAD_KEY, True),
        (2, [f"reverie: error: logdir L {IN_USE} (pid 1)"], "failed", None, False),
        (1, ["Traceback (most recent call last):", "RuntimeError: boom"], "failed", BOOM, False),
        (-signal.SIGKILL, ["step"], "failed", "killed by SIGKILL (out of memory?)", False),
    ]
    for k, (returncode, lines, status, error, fatal) in enumerate(cases):
        logdir = tmp_path / str(k)
        write_attempt(logdir, "reverie: error: an earlier attempt's")  # not the last: ignored
        write_attempt(logdir, *lines)
        state = conclude(logdir, CellState(status="running", attempts=2), returncode, 300)
        assert (state.status, state.fatal) == (status, fatal), (returncode, lines)
        assert state.error == (last_error(logdir) if error is None else error)
        assert read_state(logdir) == state  # written to sweep-cell.json
    assert read_state(tmp_path / "0").step == 300
    (tmp_path / "0" / "sweep-cell.json").write_text("{not json")
    assert read_state(tmp_path / "0") == CellState()  # unreadable: pending


# ------------------------------------------------------- running a sweep
def states(logdirs: list[Path]) -> list[CellState]:
    return [read_state(d) for d in logdirs]


def wait_until(condition, proc: subprocess.Popen, out: Path, what: str, timeout=120.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(
                f"the sweep exited ({proc.returncode}) before {what}: " + out.read_text()
            )
        assert time.time() < deadline, f"timed out waiting for {what}: {out.read_text()}"
        time.sleep(0.02)


def start_sweep(root: Path, out: Path, *args: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "reverie", *sweep_argv(root, *args)]
    with open(out, "w") as f:
        return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, text=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


STEPS = 240


@pytest.mark.slow
def test_a_sweep_stopped_halfway_resumes_without_repeating_finished_cells(tmp_path, capsys):
    root, out = tmp_path / "root", tmp_path / "sweep.out"
    args = ["--tasks", CARTPOLE, "--seeds", "3", "--steps", str(STEPS), "--jobs", "2"]
    logdirs = [root / "gym-CartPole-v1" / f"seed{s}" for s in range(3)]

    def halfway() -> bool:  # a cell done, and one in its training loop, far from its end
        found = states(logdirs)
        done = any(s.status == "done" for s in found)
        return done and any(
            s.status == "running" and 0 < metrics_step(d) <= STEPS // 2
            for s, d in zip(found, logdirs)
        )

    proc = start_sweep(root, out, *args)
    try:
        wait_until(halfway, proc, out, "a cell done and another halfway")
        proc.send_signal(signal.SIGTERM)  # passed on to the cells, which save a checkpoint
        assert proc.wait(timeout=60) == 130, out.read_text()
    finally:
        stop(proc)
    assert "rerun the same command to resume" in out.read_text()
    before = states(logdirs)
    finished = [d for d, s in zip(logdirs, before) if s.status == "done"]
    # the cells the SIGTERM stopped, with the step of their checkpoint (None for a cell
    # stopped while it started, before it could save one)
    stopped = {d: checkpoint_step(d) for d, s in zip(logdirs, before) if s.status == "interrupted"}
    saved = {d: step for d, step in stopped.items() if step is not None}
    assert finished and saved, before
    for d, step in saved.items():  # a clean exit (130) after saving a checkpoint
        assert read_state(d).returncode == 130 and 0 < step < STEPS

    capsys.readouterr()
    assert main(sweep_argv(root, *args)) == 0  # the same command again
    assert f"{len(finished)} of 3 cells already finished" in capsys.readouterr().out
    after = states(logdirs)
    assert all(s.status == "done" and s.step == STEPS for s in after), after
    for d in finished:  # not run again
        assert read_state(d).attempts == 1 and headers(d) == 1
    for d in stopped:
        assert read_state(d).attempts == 2 and headers(d) == 2
    for d, step in saved.items():
        assert f"resumed {d} at step {step} (" in last_attempt(d)

    # a finished sweep reruns nothing, here from its sweep.yaml alone
    logs = [(d / LOG).read_text() for d in logdirs]
    capsys.readouterr()
    assert main(["sweep", "--root", str(root), "--jobs", "2"]) == 0
    said = capsys.readouterr().out
    assert "3 of 3 cells already finished" in said and "start " not in said
    assert [(d / LOG).read_text() for d in logdirs] == logs
    assert main(["sweep", "--status", str(root)]) == 0
    assert "3 cells: 3 done; finished" in capsys.readouterr().out

    assert main(["score", str(root), "--reps", "200"]) == 0
    assert all((root / f"score.{ext}").stat().st_size > 0 for ext in ("md", "json", "png"))
    result = json.loads((root / "score.json").read_text())
    (row,) = result["suites"]["gym"]["tasks"]
    assert row["task"] == CARTPOLE and row["seeds"] == [0, 1, 2] and result["finished"] == 3


@pytest.mark.slow
def test_a_killed_sweep_process_stops_its_cells_with_a_checkpoint(tmp_path, capsys):
    root, out = tmp_path / "root", tmp_path / "sweep.out"
    logdir, steps = root / "gym-CartPole-v1" / "seed0", 200
    proc = start_sweep(root, out, "--tasks", CARTPOLE, "--steps", str(steps))
    try:
        wait_until(lambda: 0 < metrics_step(logdir) <= steps // 2, proc, out, "training")
        cell = read_state(logdir).pid
        assert cell is not None and pid_alive(cell)
        proc.send_signal(signal.SIGKILL)  # the cell gets SIGTERM (PR_SET_PDEATHSIG)
        proc.wait(timeout=30)
    finally:
        stop(proc)
    deadline = time.time() + 60
    while pid_alive(cell):
        assert time.time() < deadline, "the cell outlived its sweep"
        time.sleep(0.02)
    saved = checkpoint_step(logdir)
    assert saved is not None and 0 < saved < steps
    assert read_state(logdir).status == "running"  # nobody recorded its end
    capsys.readouterr()
    assert main(["sweep", "--status", str(root)]) == 0
    assert "no sweep process runs on this root" in capsys.readouterr().out
    assert main(["sweep", "--root", str(root)]) == 0  # resumes the cell
    state = read_state(logdir)
    assert state.status == "done" and state.attempts == 2 and headers(logdir) == 2
    assert f"resumed {logdir} at step {saved} (" in last_attempt(logdir)


@pytest.mark.slow
def test_a_cell_failing_on_its_input_is_reported_and_not_retried(tmp_path, capsys):
    root, task = tmp_path / "root", "gym:NoSuchEnv-v0"
    logdir = root / "gym-NoSuchEnv-v0" / "seed0"
    argv = sweep_argv(root, "--tasks", task, "--steps", "300", "--retries", "2")
    assert main(argv) == 1
    captured = capsys.readouterr()
    state = read_state(logdir)
    assert state.status == "failed" and state.fatal and state.returncode == 2
    assert state.attempts == 1 and headers(logdir) == 1  # exit 2: no retry
    assert state.error.startswith("reverie: error: unknown Gymnasium env") and task in state.error
    assert f"FAILED {logdir.relative_to(root)}: {state.error}" in captured.out
    assert f"reverie: cell {logdir.relative_to(root)} failed: {state.error}" in captured.err
    assert main(["sweep", "--status", str(root)]) == 0
    status = capsys.readouterr().out
    assert "1 cells: 1 failed" in status
    assert "failed   gym-NoSuchEnv-v0/seed0" in status and state.error in status
    # nothing finished: nothing to score, in one line
    assert main(["score", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no cell of the sweep" in err[0]


@pytest.mark.slow
def test_the_submitit_local_executor_runs_the_cells(tmp_path):
    import submitit  # noqa: F401 - the test extra has it; the executor needs it

    root = tmp_path / "root"
    argv = sweep_argv(root, "--tasks", CARTPOLE, "--steps", "100", "--executor", "submitit-local")
    # in a process of its own: submitit's local jobs rewire the standard streams, which
    # closed pytest's own stderr when run in-process after other tests
    cmd = [sys.executable, "-m", "reverie", *argv]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    logdir = root / "gym-CartPole-v1" / "seed0"
    state = read_state(logdir)
    assert state.status == "done" and state.step == 100 and state.executor == "submitit-local"
    assert state.attempts == 1 and "done: 100 env steps" in last_attempt(logdir)
    assert json.loads((logdir / "sweep-job.json").read_text())["executor"] == "submitit-local"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0  # finished: nothing submitted again
    assert "submitted 0 job(s)" in again.stdout and read_state(logdir) == state


# ---------------------------------------------------------------- statistics
@pytest.mark.slow
def test_aggregates_on_known_scores():
    from scipy import stats as scipy_stats

    rng = np.random.default_rng(0)
    scores = [[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0], [5.0]]
    means = [np.mean(t) for t in scores]
    pooled = np.concatenate(scores)
    got = stats.aggregates(scores)
    assert got["mean"] == pytest.approx(np.mean(means))
    assert got["median"] == pytest.approx(np.median(means))
    assert got["iqm"] == pytest.approx(scipy_stats.trim_mean(pooled, 0.25))
    for n in range(1, 12):
        x = rng.normal(size=n)
        assert stats.trimmed_mean(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))
    for bad in ([], [[]], [[1.0, math.nan]], [[1.0], [math.inf]]):
        with pytest.raises(ValueError):
            stats.aggregates(bad)


def test_bootstrap_intervals_hold_the_estimate_shrink_with_data_and_follow_the_seed():
    rng = np.random.default_rng(1)
    few = [rng.normal(k, 1.0, 5).tolist() for k in range(4)]
    many = [rng.normal(k, 1.0, 80).tolist() for k in range(4)]
    small, large = stats.summarise(few, reps=500), stats.summarise(many, reps=500)
    for metric in stats.METRICS:
        for found in (small, large):
            low, high = found[metric]["ci"]
            assert low <= found[metric]["value"] <= high, (metric, found)
        width = lambda f, m=metric: f[m]["ci"][1] - f[m]["ci"][0]  # noqa: E731
        assert width(large) < 0.75 * width(small), metric
    assert stats.bootstrap(few, reps=300, seed=3) == stats.bootstrap(few, reps=300, seed=3)
    assert stats.bootstrap(few, reps=300, seed=3) != stats.bootstrap(few, reps=300, seed=4)
    one = stats.bootstrap([[2.0, 2.0, 2.0]], reps=100)
    assert all(v == (2.0, 2.0) for v in one.values())


# ------------------------------------------------------- suites, published
def domains() -> dict:
    return yaml.safe_load((SRC / "configs" / "domains.yaml").read_text())


def reference(name: str) -> dict:
    return yaml.safe_load(resources.files("reverie.viz").joinpath(name).read_text())["suites"]


def test_reproduce_takes_the_papers_settings():
    preset, table = domains()["dmc_proprio"], reference("reference_scores.yaml")["dmc_proprio"]
    spec = reproduce_spec("dmc_proprio")
    assert spec.tasks == tuple(f"dmc:{t}" for t in table["scores"])
    assert len(spec.tasks) == table["mean"]["tasks"]
    assert spec.steps == preset["run"]["steps"] and spec.seeds == tuple(range(table["seeds"]))
    assert spec.suite == "dmc_proprio" and spec.size == "paper"
    cfg = cell_config(spec, expand(spec)[0])
    assert cfg.size == preset["paper_size"] and cfg.run.train_ratio == preset["run"]["train_ratio"]
    assert cfg.env.pixels is False and cfg.run.steps == spec.steps

    vision = reproduce_spec("dmc_vision", tasks="walker_walk")
    cfg = cell_config(vision, expand(vision)[0])
    assert cfg.env.pixels is True
    assert cfg.run.train_ratio == domains()["dmc_vision"]["run"]["train_ratio"]

    subset = reproduce_spec("dmc_proprio", tasks="walker_walk, dmc:cartpole_balance", steps=1000)
    assert subset.tasks == ("dmc:walker_walk", "dmc:cartpole_balance") and subset.steps == 1000
    assert reproduce_spec("bsuite", tasks="catch", seeds="2").tasks == ("bsuite:catch/0",)
    assert reproduce_spec("atari100k", tasks="pong").steps == domains()["atari100k"]["run"]["steps"]


def test_reproduce_refuses_an_unknown_suite_or_task():
    message = one_line_error(reproduce_spec, "dmc_proprioo")
    assert "unknown suite 'dmc_proprioo'" in message
    assert all(s in message for s in ("dmc_proprio", "dmc_vision", "atari100k", "crafter"))
    message = one_line_error(reproduce_spec, "dmc_proprio", tasks="walker_walk,cartpole_balanse")
    assert "no task 'cartpole_balanse'" in message and "closest: cartpole_balance" in message
    assert "tasks: " in one_line_error(reproduce_spec, "crafter", tasks="zzz")


@pytest.mark.skipif(not suite_installed("dmc"), reason="dmc not installed")
@pytest.mark.slow
def test_reproduce_dry_run_on_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dry_run, "MEASURE_SECONDS", 0.5)  # the timing is not tested here
    root = tmp_path / "root"
    argv = ["reproduce", "dmc_proprio", *TINY, "--tasks", "cartpole_balance", "--steps", "1000"]
    assert main([*argv, "--seeds", "2", "--root", str(root), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    lines = [line for line in lines if line.startswith("reverie train ")]
    assert len(lines) == 2 and not root.exists()
    size = domains()["dmc_proprio"]["paper_size"]
    for seed, line in enumerate(lines):
        assert f"--env dmc:cartpole_balance --logdir {root}/dmc-cartpole_balance/seed{seed}" in line
        assert f"--steps 1000 --seed {seed} --size {size}" in line


def test_published_scores_follow_the_tables():
    scores = reference("reference_scores.yaml")
    ref = published.lookup("dmc:cartpole_balance")
    assert ref is not None and ref.suite == "dmc_proprio"
    assert ref.final == scores["dmc_proprio"]["scores"]["cartpole_balance"]
    vision = published.lookup("dmc:cartpole_balance", pixels=True)
    assert vision is not None and vision.final == scores["dmc_vision"]["scores"]["cartpole_balance"]
    boxing = published.lookup("atari100k:boxing")
    assert boxing is not None and boxing.final == np.mean(scores["atari100k"]["scores"]["boxing"])
    assert published.lookup(CARTPOLE) is None
    low, high = scores["atari100k"]["random_human"]["pong"]
    for x in (low, high, 3.5):
        assert published.human_normalised("pong", x) == pytest.approx((x - low) / (high - low))
    assert published.human_normalised("pong", low) == 0.0
    assert published.human_normalised("cartpole_balance", 1.0) is None


def test_published_budgets_are_in_env_steps():
    """Atari100k's tables count frames (400K), 4 per env step: its budget is the preset's 100K
    env steps, where the final score applies; below it, the curve at 4x the steps in frames."""
    curves = reference("reference_curves.yaml")
    pong = published.lookup("atari100k:pong")
    assert pong is not None and pong.steps == domains()["atari100k"]["run"]["steps"]
    assert published.at_budget(pong, pong.steps) == pong.final
    frames, values = curves["atari100k"]["steps"], curves["atari100k"]["scores"]["pong"]
    assert published.at_budget(pong, 50_000) == pytest.approx(np.interp(200_000, frames, values))
    walker = published.lookup("dmc:walker_walk")
    assert walker is not None and walker.steps == domains()["dmc_proprio"]["run"]["steps"]
    steps, values = curves["dmc_proprio"]["steps"], curves["dmc_proprio"]["scores"]["walker_walk"]
    assert published.at_budget(walker, 250_000) == pytest.approx(np.interp(250_000, steps, values))
    assert published.at_budget(walker, 10) is None  # before the curve's first point


# ------------------------------------------------------- scoring fake sweeps
def fake_sweep(root: Path, tasks: list[str], seeds: int, steps: int, unfinished=()) -> dict:
    """A sweep root whose cells hold a config.yaml, episodes in metrics.jsonl and a done
    state, without training; returns each cell's final score (the mean return of its episodes
    in the last 10% of the budget) by (task, seed)."""
    spec = make_spec(tasks, str(seeds), steps)
    bind_root(root, spec)
    finals = {}
    for k, cell in enumerate(expand(spec)):
        logdir = root / cell.name
        logdir.mkdir(parents=True)
        config = {"seed": cell.seed, "env": {"id": cell.task, "pixels": False}}
        (logdir / "config.yaml").write_text(yaml.safe_dump(config))
        late = [10.0 * (k + 1), 10.0 * (k + 1) + 3.0 * cell.seed]  # in the last 10%
        episodes = [(steps // 4, -1000.0), (steps // 2, 1e6), (int(0.95 * steps), late[0])]
        episodes.append((steps, late[1]))
        with open(logdir / "metrics.jsonl", "w") as f:
            for step, ret in episodes:
                f.write(json.dumps({"step": step, "episode/return": ret}) + "\n")
                f.write(json.dumps({"step": step, "loss/total": 1.0}) + "\n")
        if (cell.task, cell.seed) in unfinished:
            write_state(logdir, CellState(status="running", step=steps // 2))
        else:
            write_state(logdir, CellState(status="done", step=steps, attempts=1))
            finals[cell.task, cell.seed] = float(np.mean(late))
    return finals


def test_score_table_of_a_fake_sweep(tmp_path):
    root, steps = tmp_path / "root", 250_000  # half the DMC budget, past Atari100k's
    tasks = ["dmc:cartpole_balance", "dmc:walker_walk", "atari100k:pong", CARTPOLE]
    finals = fake_sweep(root, tasks, 3, steps, unfinished={("dmc:walker_walk", 2)})
    result = score_sweep(root, reps=300)
    assert result["finished"] == len(finals) == 11
    assert result["left_out"] == ["dmc-walker_walk/seed2"]
    curves, scores = reference("reference_curves.yaml"), reference("reference_scores.yaml")
    rows = {r["task"]: r for entry in result["suites"].values() for r in entry["tasks"]}
    assert set(result["suites"]) == {"dmc_proprio", "atari100k", "gym"}
    for task, row in rows.items():
        mine = [finals[task, s] for s in row["seeds"]]
        assert row["seeds"] == [s for s in range(3) if (task, s) in finals]
        assert row["scores"] == pytest.approx(mine)
        assert row["mean"] == pytest.approx(np.mean(mine))
        assert row["std"] == pytest.approx(np.std(mine, ddof=1))
        assert (row["min"], row["max"]) == (min(mine), max(mine))
    for task in ("cartpole_balance", "walker_walk"):
        row = rows[f"dmc:{task}"]
        at = np.interp(steps, curves["dmc_proprio"]["steps"], curves["dmc_proprio"]["scores"][task])
        assert row["published"] == scores["dmc_proprio"]["scores"][task]
        assert row["published_at_budget"] == pytest.approx(at)
        assert row["ratio"] == pytest.approx(row["mean"] / at)
    pong = rows["atari100k:pong"]
    low, high = scores["atari100k"]["random_human"]["pong"]
    assert pong["published_at_budget"] == scores["atari100k"]["scores"]["pong"]
    assert pong["ratio"] == pytest.approx(pong["mean"] / scores["atari100k"]["scores"]["pong"])
    assert pong["hns"] == pytest.approx([(x - low) / (high - low) for x in pong["scores"]])
    # no evaluation rows: Atari100k's final-evaluation window falls back, and says so
    assert pong["fallback"] == pong["cells"] and set(pong["windows"]) == {"train_last"}
    assert "published" not in rows[CARTPOLE] and "ratio" not in rows[CARTPOLE]

    dmc = result["suites"]["dmc_proprio"]["aggregates"]["all"]
    task_scores = [rows[f"dmc:{t}"]["scores"] for t in ("cartpole_balance", "walker_walk")]
    assert dmc["tasks"] == 2 and dmc["runs"] == 5
    assert dmc["mean"]["value"] == pytest.approx(np.mean([np.mean(s) for s in task_scores]))
    assert dmc["iqm"]["value"] == pytest.approx(stats.trimmed_mean(np.concatenate(task_scores)))
    at_budget = [
        rows[f"dmc:{t}"]["published_at_budget"] for t in ("cartpole_balance", "walker_walk")
    ]
    assert dmc["published"]["mean"] == pytest.approx(np.mean(at_budget))
    atari = result["suites"]["atari100k"]["aggregates"]["all"]
    assert atari["scale"] == "human-normalised score"
    assert atari["mean"]["value"] == pytest.approx(np.mean(pong["hns"]))
    assert result["suites"]["gym"]["aggregates"] == {}


@pytest.mark.slow
def test_score_files_of_a_fake_sweep(tmp_path, capsys):
    root, steps = tmp_path / "root", 250_000
    fake_sweep(root, ["dmc:cartpole_balance", "atari100k:pong"], 2, steps)
    assert main(["score", str(root), "--reps", "200", "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "score.md").read_text()
    assert capsys.readouterr().out.startswith(markdown)
    assert (tmp_path / "out" / "score.png").stat().st_size > 0 and not (root / "score.md").exists()
    result = json.loads((tmp_path / "out" / "score.json").read_text())
    dmc, atari = result["suites"]["dmc_proprio"], result["suites"]["atari100k"]
    # a budget short of DMC's: a column of the published curve at 250K; Atari100k's is reached
    assert dmc["published_steps"] == domains()["dmc_proprio"]["run"]["steps"]
    assert atari["published_steps"] == domains()["atari100k"]["run"]["steps"]
    sections = markdown.split("\n## ")
    assert "DreamerV3 at 250K" in sections[1] and "DreamerV3 at" not in sections[2]
    for row, section in ((dmc["tasks"][0], sections[1]), (atari["tasks"][0], sections[2])):
        name = row["task"] + (" ‡" if row.get("fallback") else "")  # ‡: no final eval
        line = next(x for x in section.splitlines() if x.startswith(f"| {name} |"))
        assert f"| {row['ratio']:.2f} |" in line and "| 2 |" in line
    assert "human-normalised mean" in sections[2]


def test_a_bad_root_or_reps_for_score_is_one_line(tmp_path, capsys):
    assert main(["score", str(tmp_path)]) == 2
    assert main(["score", str(tmp_path), "--reps", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "is not a sweep root" in err[0] and "--reps" in err[1]


def test_score_marks_runs_that_leave_the_presets_protocol(tmp_path):
    root, steps = tmp_path / "root", 250_000
    fake_sweep(root, ["dmc:cartpole_balance", "dmc:walker_walk"], 1, steps)
    walker = root / "dmc-walker_walk" / "seed0" / "config.yaml"
    config = yaml.safe_load(walker.read_text())
    walker.write_text(yaml.safe_dump({**config, "run": {"train_ratio": 64.0}}))
    result = score_sweep(root, reps=100)
    rows = {r["task"]: r for r in result["suites"]["dmc_proprio"]["tasks"]}
    assert rows["dmc:walker_walk"]["not_comparable"] == {"run.train_ratio": [64.0, 1024.0]}
    assert "not_comparable" not in rows["dmc:cartpole_balance"]
    markdown = to_markdown(result)
    assert "| dmc:walker_walk † |" in markdown and "| dmc:cartpole_balance |" in markdown
    assert "run.train_ratio=64 (preset 1024)" in markdown
