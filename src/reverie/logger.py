"""Metrics to metrics.jsonl and TensorBoard (scalars, GIF videos), and a live progress bar."""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from reverie.files import NO_SPACE, disk_full, write
from reverie.wandb_sink import WandbSink, frames_of


class MetricsMean:
    """Running sums of device scalars, averaged (one host sync) only when read."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for k, v in metrics.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1

    def result(self) -> dict[str, float]:
        if not self.count:
            return {}
        keys = list(self.sums)
        values = (torch.stack([self.sums[k] for k in keys]) / self.count).tolist()
        self.sums, self.count = {}, 0
        return dict(zip(keys, values))


class Logger:
    """metrics.jsonl, plus TensorBoard and W&B (`wandb`: a `reverie.wandb_sink.WandbSink`)."""

    def __init__(self, logdir: Path, tensorboard: bool = True, wandb: WandbSink | None = None):
        self.logdir, self.wandb = Path(logdir), wandb
        self.path = self.logdir / "metrics.jsonl"
        self.file = open(self.path, "a", buffering=1)  # line-buffered: each line lands whole
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.logdir / "tensorboard"))

    def write(self, step: int, metrics: Mapping[str, float | str]) -> None:
        # strings (e.g. env/fault messages) go to metrics.jsonl as they are, not to TensorBoard
        clean = {
            k: v if isinstance(v, str) else (float(v) if _finite(v) else None)
            for k, v in metrics.items()
        }
        line = json.dumps({"step": int(step), "time": round(time.time(), 3), **clean}) + "\n"
        end = self.file.tell()
        try:
            write(self.file, line)
            self.file.flush()
        except OSError as e:
            self.file.truncate(end)  # no torn last line: readers parse every line
            if e.errno in NO_SPACE:
                raise disk_full(self.path, e) from None
            raise
        if self.tb is not None:
            try:
                for k, v in clean.items():
                    if v is not None and not isinstance(v, str):
                        self.tb.add_scalar(k, v, step)
            except OSError as e:  # raised by TensorBoard's writer thread on a later call
                if e.errno in NO_SPACE:
                    raise disk_full(self.logdir / "tensorboard" / "events", e) from None
                raise
        if self.wandb is not None:
            self.wandb.log(step, clean)

    def video(self, name: str, step: int, video: np.ndarray, fps: int = 10) -> None:
        """A batch of videos (N, T, C, H, W) uint8, stacked vertically, as an animated GIF
        into TensorBoard (an image summary: its own `add_video` needs moviepy) and W&B."""
        if self.tb is None and self.wandb is None:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary

        frames = frames_of(video)  # (T, N*H, W, C)
        if self.wandb is not None:
            self.wandb.video(name, step, encode_gif(frames, fps))
        if self.tb is None:
            return
        image = Summary.Image(
            height=frames.shape[1],
            width=frames.shape[2],
            colorspace=frames.shape[3],
            encoded_image_string=encode_gif(frames, fps),
        )
        writer = self.tb.file_writer
        assert writer is not None  # SummaryWriter opens it in __init__ (None only after close)
        writer.add_summary(Summary(value=[Summary.Value(tag=name, image=image)]), step)

    def flush(self) -> None:
        self.file.flush()
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        self.flush()
        self.file.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.close()


class NullLogger(Logger):
    """The logger of a job's ranks other than 0: rank 0 writes the logs, these write nothing."""

    def __init__(self) -> None:
        self.tb, self.wandb = None, None

    def write(self, step: int, metrics: Mapping[str, float | str]) -> None:
        pass

    def video(self, name: str, step: int, video: np.ndarray, fps: int = 10) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def encode_gif(frames: np.ndarray, fps: int = 10) -> bytes:
    """(T, H, W, 3) uint8 -> GIF bytes."""
    import imageio.v3 as iio

    buf = io.BytesIO()
    iio.imwrite(buf, frames, extension=".gif", duration=1000 / fps, loop=0)
    return buf.getvalue()


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


class Progress:
    """A rich progress bar over env steps with the latest returns and speeds."""

    def __init__(self, total: int, start: int, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(
            TextColumn("[bold]train"),
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            refresh_per_second=4,
        )
        self.task = self.bar.add_task("train", total=total, completed=start, info="")
        self.bar.start()

    def update(self, step: int, info: str) -> None:
        if self.enabled:
            self.bar.update(self.task, completed=step, info=info)

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()
