"""The Weights & Biases sink, offline: metrics and dream videos mirrored, one run id per
logdir kept across resumes."""

from __future__ import annotations

import pytest

from .conftest import TINY, train_tiny

pytestmark = pytest.mark.slow  # every test here takes a second or more

IMAGE_ENV = "gym:fake_envs:fake_envs/Image-v0"


def test_wandb_offline_mirrors_metrics_and_videos_and_keeps_its_run_id(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    overrides = [
        *TINY,
        f"env.id={IMAGE_ENV}",
        "logger.wandb=true",
        "run.train_fill=16",
        "run.train_ratio=16",
        "run.dream_every=20",
        "run.log_every=0",
    ]
    train_tiny(tmp_path, 24, overrides)
    run_id = (tmp_path / "wandb_id").read_text().strip()
    assert run_id
    runs = list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
    assert runs, list((tmp_path / "wandb").iterdir())
    records = b"".join(p.read_bytes() for p in runs[0].glob("*.wandb"))
    assert b"loss/total" in records and b"episode/return" in records
    assert list((tmp_path / "media").glob("dream_video-*.gif"))
    train_tiny(tmp_path, 30, overrides)  # a resume continues the same W&B run
    assert (tmp_path / "wandb_id").read_text().strip() == run_id
    assert len(list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))) >= 1
    assert not [p for p in (tmp_path / "wandb").glob("offline-run-*") if run_id not in p.name]
