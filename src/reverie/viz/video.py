"""A streaming video writer (GIF or MP4 by suffix) that `evaluate` can append frames to."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from imageio.core.format import Format


class VideoWriter:
    """Append (H, W, C) uint8 frames; they go to disk as they come (MP4) or at `close` (GIF).

    Every frame is scaled to the first one's size, small frames are enlarged by an integer
    factor to at least `min_size` pixels high, and MP4 frames are padded to multiples of 16.
    """

    def __init__(self, path: str | Path, fps: int = 30, min_size: int = 256):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps, self.min_size = fps, min_size
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self.scale = 1
        self.gif = self.path.suffix.lower() == ".gif"
        self._gif_frames: list[np.ndarray] = []
        self._writer: Format.Writer | None = None

    def append(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame)
        if frame.ndim == 2:
            frame = frame[..., None]
        if frame.shape[-1] == 1:
            frame = np.repeat(frame, 3, -1)
        frame = np.ascontiguousarray(frame[..., :3].astype(np.uint8))
        if self.size is None:
            self.scale = max(1, -(-self.min_size // frame.shape[0]))
            self.size = frame.shape[:2]
        if frame.shape[:2] != self.size:
            from PIL import Image

            # Pillow sets its module-level filter names (BILINEAR, ...) with setattr, unseen
            # by mypy; Image.Resampling would need Pillow >= 9.1 (pyproject allows 9.0)
            bilinear = Image.BILINEAR  # type: ignore[attr-defined]
            frame = np.asarray(Image.fromarray(frame).resize(self.size[::-1], bilinear))
        if self.scale > 1:
            frame = frame.repeat(self.scale, 0).repeat(self.scale, 1)
        self.frames += 1
        if self.gif:
            self._gif_frames.append(frame)
            return
        h, w = frame.shape[:2]
        frame = np.pad(frame, ((0, (-h) % 16), (0, (-w) % 16), (0, 0)))
        if self._writer is None:
            import imageio.v2 as imageio

            self._writer = imageio.get_writer(
                self.path, fps=self.fps, macro_block_size=16, format="FFMPEG"
            )
        self._writer.append_data(frame)

    def close(self) -> Path:
        if self.gif and self._gif_frames:
            import imageio.v3 as iio

            iio.imwrite(self.path, np.stack(self._gif_frames), duration=1000 / self.fps, loop=0)
            self._gif_frames = []
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self.path

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
