"""Visualisation: open-loop dreams, evaluation videos, learning curves and reference scores."""

import json
import re

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from reverie.build import open_trainer
from reverie.cli import main
from reverie.run_dir import load_agent, resolve_config
from reverie.viz.dream import (
    IMAGINED,
    OBSERVED,
    dream,
    grid_layout,
    image_grid,
    video_frames,
    video_tensor,
    write_dream,
)
from reverie.viz.plot import crafter_score, plot_runs, reference_for, success_rates

from .conftest import TINY

FAST = [*TINY, "run.train_ratio=32", "replay.chunk=64"]


def train(logdir, steps, *extra):
    trainer = open_trainer(resolve_config(logdir, [*FAST, *extra]), logdir)
    try:
        trainer.train(steps)
    finally:
        trainer.close()
    return trainer


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("vector")
    train(logdir, 60, "run.dream_every=50")
    return logdir


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("pixels")
    train(logdir, 60, "env.pixels=true", "run.dream_every=50", "run.tensorboard=true")
    return logdir


@pytest.mark.slow
def test_trainer_dreams_at_interval(vector_run, pixel_run):
    assert [p.suffix for p in (vector_run / "dreams").iterdir()] == [".png"]
    gifs = list((pixel_run / "dreams").iterdir())
    assert len(gifs) == 1 and gifs[0].suffix == ".gif"
    assert iio.imread(gifs[0]).ndim == 4  # (T, H, W, 3)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(pixel_run / "tensorboard"))
    events.Reload()
    (image,) = events.Images("dream/video")  # an animated GIF of true | model | error
    assert image.step == 50 and image.encoded_image_string[:6] == b"GIF89a"
    lines = [json.loads(x) for x in (pixel_run / "metrics.jsonl").read_text().splitlines()]
    assert any("dream/mse_image" in line for line in lines)


@pytest.mark.slow
def test_dream_images_gif_mp4_and_grid(pixel_run, tmp_path):
    agent, cfg, _ = load_agent(pixel_run).parts()
    result = dream(agent, cfg, pixel_run, context=5, horizon=10, count=2)
    assert result.source == "replay" and result.context == 5
    n, t = result.count, result.length
    assert 1 <= n <= 2 and 6 <= t <= 15
    assert result.pred["image"].shape == result.truth["image"].shape == (n, t, 64, 64, 3)

    paths = write_dream(result, tmp_path / "d.gif")
    assert {k: p.name for k, p in paths.items()} == {"gif": "d.gif", "mp4": "d.mp4", "png": "d.png"}
    frames = video_frames(result)
    gif = iio.imread(paths["gif"])
    assert gif.shape[0] == t and gif.shape[1:3] == frames.shape[1:3]
    mp4 = iio.imread(paths["mp4"])
    assert mp4.shape[0] == t and mp4.shape[1:3] == frames.shape[1:3]
    assert frames.shape[1] % 16 == 0 and frames.shape[2] % 16 == 0

    grid = np.asarray(Image.open(paths["png"]).convert("RGB"))
    assert grid.shape == image_grid(result).shape
    lay = grid_layout(result)
    assert grid.shape[1] == lay.left + t * lay.cell_w
    for row in range(3):  # true / model / error: observed frames green, imagined red
        y, x = lay.cell(0, row, 0)
        assert tuple(grid[y, x]) == OBSERVED
        y, x = lay.cell(0, row, result.context)
        assert tuple(grid[y + 1, x + 1]) == IMAGINED
    y, x = lay.cell(n - 1, 2, t - 1)
    assert tuple(grid[y + lay.cell_h - 1, x + lay.cell_w - 1]) == IMAGINED

    video = video_tensor(result)
    assert video.dtype == np.uint8 and video.shape[:3] == (n, t, 3)
    assert tuple(video[0, 0, :, 0, 0]) == OBSERVED and tuple(video[0, -1, :, 0, 0]) == IMAGINED


@pytest.mark.slow
def test_dream_cli_default_paths(pixel_run, capsys):
    assert main(["dream", "--logdir", str(pixel_run), "--horizon", "8", "--sequences", "1"]) == 0
    out = capsys.readouterr().out
    for suffix in ("gif", "mp4", "png"):
        assert (pixel_run / f"dream.{suffix}").exists()
        assert f"dream.{suffix}" in out
    assert iio.imread(pixel_run / "dream.gif").shape[0] <= 13


@pytest.mark.slow
def test_dream_vectors_plot_and_env_fallback(vector_run, tmp_path, capsys):
    assert main(["dream", "--logdir", str(vector_run), "--horizon", "10"]) == 0
    assert "dream.png" in capsys.readouterr().out
    assert Image.open(vector_run / "dream.png").size[0] > 300
    agent, cfg, _ = load_agent(vector_run).parts()
    result = dream(agent, cfg, logdir=None, context=3, horizon=6, count=2)  # no replay
    assert result.source == "env" and result.truth["vector"].shape[2] == 4
    assert write_dream(result, tmp_path / "v.png")["vectors"].exists()


@pytest.mark.slow
def test_eval_video_from_render_and_from_pixels(vector_run, pixel_run, tmp_path, capsys):
    video = tmp_path / "eval.mp4"
    args = ["eval", "--logdir", str(pixel_run), "--episodes", "2", "--video", str(video)]
    assert main(args) == 0
    out = capsys.readouterr().out
    length = float(re.search(r"mean length ([\d.]+)", out).group(1))
    frames = iio.imread(video)
    assert frames.shape[0] == int(2 * length) + 2  # per episode the reset frame, then each step
    assert frames.shape[1:] == (256, 256, 3)  # the 64x64 observation, enlarged 4x
    assert str(video) in out

    gif = tmp_path / "eval.gif"
    args = ["eval", "--logdir", str(vector_run), "--episodes", "1", "--video", str(gif)]
    assert main(args) == 0
    out = capsys.readouterr().out
    length = float(re.search(r"mean length ([\d.]+)", out).group(1))
    frames = iio.imread(gif)  # GIF merges identical consecutive frames: at most length + 1
    assert 1 < frames.shape[0] <= int(length) + 1
    assert frames.shape[1:] == (400, 600, 3)  # CartPole's env.render()


def fake_run(logdir, env_id, seed, returns, steps=None, extra=None, pixels=False):
    logdir.mkdir(parents=True)
    (logdir / "config.yaml").write_text(
        f"seed: {seed}\nenv:\n  id: {env_id}\n  pixels: {str(pixels).lower()}\n"
    )
    steps = steps if steps is not None else np.linspace(1000, 500_000, len(returns))
    lines = []
    for i, (s, r) in enumerate(zip(steps, returns)):
        line = {"step": int(s), "episode/return": float(r), "episode/length": 1000}
        line.update((extra or {}).get(i, {}))
        lines.append(json.dumps(line))
    lines.append(json.dumps({"step": int(steps[-1]), "eval/return": float(returns[-1])}))
    lines.append(json.dumps({"step": 5, "loss/total": 1.0}))
    (logdir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_plot_with_reference_line_over_seeds(tmp_path, capsys, monkeypatch):
    for seed, top in ((0, 800), (1, 900)):
        fake_run(tmp_path / f"walker-{seed}", "dmc:walker_walk", seed, np.linspace(30, top, 50))
    fake_run(tmp_path / "cartpole", "gym:CartPole-v1", 0, [10, 50, 200], [100, 2000, 4000])
    out = tmp_path / "curves.png"
    result = plot_runs([tmp_path], out)
    walker = result["groups"]["dmc:walker_walk"]
    assert walker["runs"] == 2 and walker["reference"] == 941
    assert walker["steps"] == 500_000 and 800 < walker["final_eval"] < 900
    assert "reference" not in result["groups"]["gym:CartPole-v1"]
    image = Image.open(out)
    assert image.size[0] > 500 and image.size[1] > 300

    monkeypatch.chdir(tmp_path)  # several logdirs: the default is ./returns.png
    assert main(["plot", str(tmp_path / "walker-0"), str(tmp_path / "walker-1")]) == 0
    assert "returns.png" in capsys.readouterr().out and (tmp_path / "returns.png").exists()
    assert main(["plot", str(tmp_path / "missing")]) == 2


def test_reference_scores():
    assert reference_for("dmc:walker_walk").value == 941
    assert reference_for("dmc:walker_walk", pixels=True).value == 960
    assert reference_for("dmc:quadruped_run").value == 612  # vision only: used as fallback
    boxing = reference_for("atari100k:boxing")
    assert boxing.band == (74, 79) and boxing.value == 76.5
    assert reference_for("atari100k:krull").band == (7700, 7900)
    assert "2023 code" in reference_for("atari100k:pong").label
    crafter = reference_for("crafter")
    assert crafter.value == 11.7 and "14.5%" in crafter.label and "Hafner" in crafter.source
    assert reference_for("crafter:reward").value == 11.7
    assert reference_for("crafter:noreward") is None
    assert reference_for("gym:CartPole-v1") is None


@pytest.mark.slow
def test_crafter_achievement_bars(tmp_path):
    extra = {
        0: {"achievement/collect_wood": 2, "achievement/place_table": 0},
        1: {"achievement/collect_wood": 1, "achievement/place_table": 1},
        2: {"achievement/collect_wood": 0, "achievement/place_table": 0},
        3: {"achievement/collect_wood": 3, "achievement/eat_cow": 1},
    }
    fake_run(tmp_path / "crafter", "crafter:reward", 0, [1, 2, 3, 4], [10, 20, 30, 40], extra)
    result = plot_runs([tmp_path / "crafter"], tmp_path / "c.png")
    assert result["paths"]["achievements"] == tmp_path / "c-achievements.png"
    assert Image.open(tmp_path / "c-achievements.png").size[0] > 500
    from reverie.viz.plot import load_run

    rates = success_rates([load_run(tmp_path / "crafter")])
    assert rates == {"collect_wood": 75.0, "eat_cow": 25.0, "place_table": 25.0}
    group = result["groups"]["crafter:reward"]
    assert group["crafter_score"] == pytest.approx(crafter_score(rates))
    assert group["reference"] == 11.7
