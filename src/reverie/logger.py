"""Metrics to metrics.jsonl and TensorBoard, and a live progress bar."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch


class MetricsMean:
    """Running sums of device scalars, averaged (one host sync) only when read."""

    def __init__(self):
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
    def __init__(self, logdir: Path, tensorboard: bool = True):
        self.logdir = Path(logdir)
        self.path = self.logdir / "metrics.jsonl"
        self.file = open(self.path, "a", buffering=1)  # line-buffered: each line lands whole
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.logdir / "tensorboard"))

    def write(self, step: int, metrics: dict[str, float | str]) -> None:
        # strings (e.g. env/fault messages) go to metrics.jsonl as they are, not to TensorBoard
        clean = {
            k: v if isinstance(v, str) else (float(v) if _finite(v) else None)
            for k, v in metrics.items()
        }
        self.file.write(
            json.dumps({"step": int(step), "time": round(time.time(), 3), **clean}) + "\n"
        )
        if self.tb is not None:
            for k, v in clean.items():
                if v is not None and not isinstance(v, str):
                    self.tb.add_scalar(k, v, step)

    def flush(self) -> None:
        self.file.flush()
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        self.flush()
        self.file.close()
        if self.tb is not None:
            self.tb.close()


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
