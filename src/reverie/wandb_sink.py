"""An optional Weights & Biases sink that mirrors metrics.jsonl (`logger.wandb=true`, extra
`[wandb]`). One W&B run per logdir: its id is stored in `<logdir>/wandb_id` on the first
start and reused on every resume, so a resumed run continues the same W&B run.
`WANDB_MODE=offline` keeps everything on disk (`<logdir>/wandb`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from reverie.errors import MissingExtraError, install_command
from reverie.files import atomic_write

ID_FILE = "wandb_id"


def run_id(logdir: Path) -> str:
    """The logdir's W&B run id, created once."""
    path = logdir / ID_FILE
    if path.exists():
        return path.read_text().strip()
    import secrets

    new = secrets.token_hex(4)  # W&B run ids: short, unique per project
    atomic_write(path, new.encode())
    return new


class WandbSink:
    def __init__(self, logdir: Path, project: str, entity: str, config: dict[str, Any]):
        try:
            import wandb
        except ImportError:
            raise MissingExtraError(
                f"logger.wandb=true needs the wandb package: {install_command('wandb')} "
                "(or set logger.wandb=false)"
            ) from None
        self.wandb, self.logdir = wandb, Path(logdir)
        self.run = wandb.init(
            id=run_id(self.logdir),
            resume="allow",
            dir=str(self.logdir),
            project=project,
            entity=entity or None,
            name=self.logdir.name,
            config=config,
            mode=os.environ.get("WANDB_MODE", "online"),  # type: ignore[arg-type]
        )

    def log(self, step: int, metrics: Mapping[str, float | str | None]) -> None:
        numbers = {k: v for k, v in metrics.items() if isinstance(v, float)}
        if numbers:
            self.run.log(numbers, step=int(step))

    def video(self, name: str, step: int, gif: bytes) -> None:
        """An animated GIF (encoded bytes), uploaded as a W&B video."""
        media = self.logdir / "media"
        media.mkdir(exist_ok=True)
        path = media / f"{name.replace('/', '_')}-{int(step):09d}.gif"
        atomic_write(path, gif)
        self.run.log({name: self.wandb.Video(str(path), format="gif")}, step=int(step))

    def close(self) -> None:
        self.run.finish()
        # finish() asks W&B's service process to close the run's files and returns before
        # it has: the offline `.wandb` file could still hold only its header when `wandb
        # sync` (or a test) read it. Tearing the service down waits for every file to
        # close; not while another W&B run of this process still needs the service.
        if self.wandb.run is None:
            self.wandb.teardown()


def frames_of(video: np.ndarray) -> np.ndarray:
    """(N, T, C, H, W) videos stacked vertically into (T, N*H, W, C) frames."""
    return np.concatenate(list(video.transpose(0, 1, 3, 4, 2)), 1)
