"""Atomic checkpoints with a size+CRC footer, falling back to the previous good one."""

from __future__ import annotations

import io
import os
import pickle
import re
import sys
from pathlib import Path

import torch

from reverie.errors import ReverieError
from reverie.files import CorruptFileError, atomic_write, strip_footer, with_footer

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
# 2: the 2024 parameterisation (biases on every layer, the decoder's block-diagonal input)
FORMAT_VERSION = 2


class CheckpointError(ReverieError, RuntimeError):
    """A checkpoint that cannot be read (corrupt, truncated), or one refused."""


class CheckpointVersionError(CheckpointError):
    """A readable checkpoint of another format: no fallback, nothing is overwritten."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holding pickled objects, whose loading could run code: refused."""


def save(logdir: Path, state: dict) -> Path:
    """Write `state` to logdir/checkpoint.pt; the one it replaces becomes checkpoint.prev.pt."""
    logdir = Path(logdir)
    buf = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **state}, buf)
    payload = buf.getvalue()
    path = logdir / CHECKPOINT
    tmp = logdir / f".{CHECKPOINT}.new"
    atomic_write(tmp, with_footer(payload))
    if path.exists():
        os.replace(path, logdir / PREVIOUS)
    os.replace(tmp, path)
    return path


def load_file(path: str | Path) -> dict:
    """One checkpoint file, loaded as weights and plain data only (`weights_only=True`):
    a file that holds any other pickled object is refused, not executed."""
    path = Path(path)
    try:
        payload = strip_footer(path.read_bytes(), path)
    except CorruptFileError as e:
        raise CheckpointError(str(e)) from None
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise UnsafeCheckpointError(
            f"{path} is not only weights: it holds a pickled object{what}, which could run "
            "code when loaded, so it was refused; use checkpoints from sources you trust, "
            "written by reverie"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        found = state.get("format") if isinstance(state, dict) else None
        raise CheckpointVersionError(
            f"{path} has checkpoint format {found}, this reverie reads "
            f"{FORMAT_VERSION}: use the reverie version that wrote it, or start a new logdir"
        )
    return state


def load_latest(logdir: Path) -> dict | None:
    """The newest readable checkpoint of a logdir, or None if it has none.

    A corrupt newest checkpoint is reported on stderr and the previous one is used.
    """
    logdir = Path(logdir)
    errors = []
    for name in (CHECKPOINT, PREVIOUS):
        path = logdir / name
        if not path.exists():
            continue
        try:
            return load_file(path)
        except (CheckpointVersionError, UnsafeCheckpointError):
            raise  # another reverie's run, or not ours at all: no fallback, no overwrite
        except (CheckpointError, Exception) as e:  # noqa: BLE001 - report and fall back
            errors.append(str(e) if isinstance(e, CheckpointError) else f"{path}: {e}")
            print(
                f"reverie: warning: cannot read {path} ({errors[-1]}); "
                "trying the previous checkpoint",
                file=sys.stderr,
            )
    if errors:
        raise CheckpointError("no readable checkpoint in " + str(logdir) + ": " + "; ".join(errors))
    return None
