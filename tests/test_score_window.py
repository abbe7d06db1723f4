"""The window `reverie score` scores each suite's runs over, on a constructed sweep root
(config.yaml, metrics.jsonl and a done state written by hand: no training).

Atari100k follows the paper's protocol: the mean of the evaluation episodes at the end of
training (100K agent steps = 400K frames); a run without that evaluation falls back to its
training episodes in the last 10% of the budget, and the table says so. Other suites keep
the training episodes in the last 10% of the budget, even where evaluations were logged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from reverie.cli import main
from reverie.sweep import published
from reverie.sweep.cells import CellState, write_state
from reverie.sweep.grid import expand
from reverie.sweep.spec import bind_root, make_spec

STEPS = 100_000  # the atari100k preset's run.steps: 100K agent steps, 400K frames
ATARI_WINDOW = "Atari100k: mean of the evaluation episodes at 100,000 agent steps (400K frames)"
TRAIN_WINDOW = "mean of the training episodes in the last 10% of the budget"

# (step, return): chosen so that each wrong window gives its own number
TRAIN = [(20_000, -5.0), (50_000, 3.0), (95_000, 7.0), (100_000, 9.0)]  # last 10%: 8.0
EVALS = [(50_000, -20.0), (90_000, 1.0), (100_000, 12.0), (100_000, 14.0)]  # final: 13.0
RIGHT = 13.0  # the two eval rows at the final step (a resumed run may log that step twice)
WRONG = {
    "training episodes in the last 10%": 8.0,
    "every evaluation": (-20.0 + 1.0 + 12.0 + 14.0) / 4,
    "the evaluation before the last": 1.0,
    "the first evaluation": -20.0,
    "the last eval row alone": 14.0,
}


def write_cell(logdir: Path, task: str, seed: int, evals: bool) -> None:
    logdir.mkdir(parents=True)
    config = {"seed": seed, "env": {"id": task, "pixels": task.startswith("atari100k")}}
    (logdir / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [{"step": s, "episode/return": r, "episode/length": 100} for s, r in TRAIN]
    if evals:
        rows += [{"step": s, "eval/return": r, "eval/length": 500.0} for s, r in EVALS]
    rows.append({"step": STEPS, "loss/total": 1.0})
    rows.sort(key=lambda row: row["step"])
    (logdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_state(logdir, CellState(status="done", step=STEPS, attempts=1))


def constructed_sweep(root: Path) -> dict[tuple[str, int], str]:
    """Atari100k pong, seed 0 with evaluations (the final one included), seed 1 without
    (run.eval_every=0); DMC cartpole_balance with evaluations. Returns the cell names."""
    spec = make_spec(["atari100k:pong", "dmc:cartpole_balance"], "2", STEPS)
    bind_root(root, spec)
    names = {}
    for cell in expand(spec):
        evals = not (cell.task == "atari100k:pong" and cell.seed == 1)
        write_cell(root / cell.name, cell.task, cell.seed, evals)
        names[cell.task, cell.seed] = cell.name
    return names


def test_the_wrong_windows_give_other_numbers():
    assert all(value != RIGHT for value in WRONG.values())
    assert len(set(WRONG.values())) == len(WRONG)


@pytest.mark.slow
def test_atari100k_is_scored_by_its_final_evaluation_and_says_so(tmp_path, capsys):
    root, out = tmp_path / "root", tmp_path / "out"
    names = constructed_sweep(root)
    assert main(["score", str(root), "--reps", "100", "--out", str(out)]) == 0
    result = json.loads((out / "score.json").read_text())
    markdown = (out / "score.md").read_text()
    assert capsys.readouterr().out.startswith(markdown)

    atari = result["suites"]["atari100k"]
    assert atari["window"] == ATARI_WINDOW
    (row,) = atari["tasks"]
    # seed 0: exactly the mean of the evaluation at 100K; seed 1 (no evaluation) falls back
    assert row["scores"] == [RIGHT, WRONG["training episodes in the last 10%"]]
    assert row["windows"] == ["final_eval", "train_last"]
    assert row["fallback"] == [names["atari100k:pong", 1]]
    low, high = published.random_human("pong") or (0.0, 1.0)
    assert row["hns"][0] == pytest.approx((RIGHT - low) / (high - low))

    dmc = result["suites"]["dmc_proprio"]
    assert dmc["window"] == f"DMC proprio: {TRAIN_WINDOW}"
    (cartpole,) = dmc["tasks"]
    assert cartpole["scores"] == [8.0, 8.0]  # its evaluations are not its window
    assert "fallback" not in cartpole

    sections = markdown.split("\n## ")
    section = next(s for s in sections if s.startswith("Atari100k"))
    assert f"Window — {ATARI_WINDOW}." in section
    assert "| atari100k:pong ‡ | 2 |" in section  # the fallback, marked in the table
    footnote = next(x for x in section.splitlines() if x.startswith("‡"))
    assert names["atari100k:pong", 1] in footnote and "training episodes" in footnote
    assert TRAIN_WINDOW in next(s for s in sections if s.startswith("DMC"))
