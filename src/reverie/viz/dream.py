"""Open-loop predictions of the world model (DreamerV3 paper, Figure 4).

The model observes the first `context` frames of a real sequence through its posterior,
then imagines the next `horizon` steps with its prior alone, driven by the actions that
were really taken. Decoding every latent gives the model's guess of each frame, shown
beside the truth and the error: observed frames have a green border, imagined ones red.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from reverie.agent import Agent
    from reverie.logger import Logger
    from reverie.replay import Replay

OBSERVED = (40, 200, 40)  # border of frames the model saw (posterior)
IMAGINED = (230, 40, 40)  # border of frames the model dreamed (prior, real actions)
BORDER = 2
ROWS = ("true", "model", "error")


@dataclass
class Dream:
    """Real and predicted observations of N sequences of T steps, the first `context` observed.

    truth / pred map each observation key to (N, T, ...) arrays: images (N, T, H, W, C)
    (truth uint8, prediction float in 0..255), vectors (N, T, D) float.
    """

    truth: dict[str, np.ndarray]
    pred: dict[str, np.ndarray]
    context: int
    images: list[str]
    vectors: list[str]
    source: str  # "replay" or "env"

    @property
    def count(self) -> int:
        return int(next(iter(self.truth.values())).shape[0])

    @property
    def length(self) -> int:
        return int(next(iter(self.truth.values())).shape[1])

    def mse(self) -> dict[str, float]:
        """Mean squared error of the imagined steps per key (images in 0..1 units)."""
        out = {}
        for k in self.truth:
            t = self.truth[k][:, self.context :].astype(np.float64)
            p = self.pred[k][:, self.context :].astype(np.float64)
            scale = 255.0 if k in self.images else 1.0
            out[k] = float(np.mean(((t - p) / scale) ** 2)) if t.size else float("nan")
        return out


# ------------------------------------------------------------------ sequences
def _needed_keys(agent: Agent) -> list[str]:
    return [*agent.obs_spec.keys, "action", "is_first"]


def split_episodes(data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Cut one stream of consecutive steps (T, ...) into episodes at `is_first`."""
    starts = [0, *np.flatnonzero(data["is_first"][1:]) + 1, len(data["is_first"])]
    out = []
    for a, b in zip(starts[:-1], starts[1:]):
        if b > a:
            out.append({k: v[a:b] for k, v in data.items()})
    return out


def segments_from_replay(replay: Replay, keys: list[str], chunks: int = 4) -> list[dict]:
    """Episodes (possibly cut) from the newest `chunks` chunks of every replay stream."""
    return [ep for run in replay.recent(keys, chunks) for ep in split_episodes(run)]


def segments_from_env(
    agent: Agent, cfg: DictConfig, episodes: int, max_length: int, seed: int = 0
) -> list[dict]:
    """Fresh episodes of the agent's (sampled) policy, each at most `max_length` steps."""
    from reverie.envs import env_kwargs, make_env
    from reverie.rollout import episode_steps

    env = make_env(str(cfg.env.id), seed=seed, **env_kwargs(cfg.env))
    keys = agent.obs_spec.keys
    segments = []
    try:
        for ep in range(episodes):
            steps = []
            for obs, act, _, next_obs, done in episode_steps(agent, env, seed + ep, "sample"):
                steps.append({**{k: np.asarray(obs[k]) for k in keys}, "action": act})
                if len(steps) >= max_length:
                    break
                if done:  # the last observation, with no action taken on it
                    steps.append({**{k: np.asarray(next_obs[k]) for k in keys}, "action": 0 * act})
            seg = {k: np.stack([s[k] for s in steps]) for k in steps[0]}
            seg["is_first"] = np.zeros(len(steps), bool)
            seg["is_first"][0] = True
            segments.append(seg)
    finally:
        env.close()
    return segments


def pick_windows(
    segments: list[dict], length: int, count: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """`count` windows of `length` steps from distinct segments, stacked (N, T, ...).

    Windows never cross an episode start. Fewer come back if fewer segments are long enough.
    """
    rng = np.random.default_rng(seed)
    long = [s for s in segments if len(s["is_first"]) >= length]
    picks = rng.permutation(len(long))[:count]
    rows = []
    for i in sorted(picks):
        seg = long[i]
        start = int(rng.integers(len(seg["is_first"]) - length + 1))
        rows.append({k: v[start : start + length] for k, v in seg.items()})
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


# ------------------------------------------------------------------ the model
@torch.inference_mode()
def open_loop(agent: Agent, data: dict[str, np.ndarray], context: int) -> Dream:
    """Observe `context` steps of `data` (N, T, ...), imagine the rest with its real actions."""
    spec, dev = agent.obs_spec, agent.device
    t = data["is_first"].shape[1]
    context = max(1, min(context, t))
    obs = {k: torch.as_tensor(np.asarray(data[k][:, :context]), device=dev) for k in spec.keys}
    actions = torch.as_tensor(np.asarray(data["action"]), device=dev).float()  # (N, T, A)
    prev_actions = torch.cat([torch.zeros_like(actions[:, :1]), actions[:, :-1]], 1)
    feat = agent.wm.open_loop(obs, prev_actions)
    pred = {k: d.pred().float().cpu().numpy() for k, d in agent.wm.decoder(feat).items()}
    for k in spec.images:
        pred[k] = np.clip(pred[k], 0.0, 255.0)
    truth = {k: np.asarray(data[k]) for k in spec.keys}
    return Dream(truth, pred, context, list(spec.images), list(spec.vectors), "replay")


def dream(
    agent: Agent,
    cfg: DictConfig,
    logdir: str | Path | None = None,
    context: int = 5,
    horizon: int = 45,
    count: int = 3,
    seed: int = 0,
    replay: Replay | None = None,
) -> Dream:
    """Open-loop predictions on `count` sequences of `context + horizon` steps.

    Sequences come from `replay` (the live one of a trainer), else from `<logdir>/replay`,
    else from fresh episodes of the agent in its env. When no episode is that long, the
    sequences are shortened to the longest one (and the context to at most half of it).
    """
    from reverie.config import ConfigError
    from reverie.replay import Replay

    keys = _needed_keys(agent)
    segments, source = [], "replay"
    if replay is None and logdir is not None and (Path(logdir) / "replay").exists():
        rc = cfg.replay
        replay = Replay(max(8 * int(rc.chunk), 8192), int(rc.chunk), Path(logdir) / "replay")
        replay.load()
    if replay is not None:
        segments = segments_from_replay(replay, keys)
    if not segments:
        source = "env"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            segments = segments_from_env(agent, cfg, count, context + horizon, seed)
    longest = max(len(s["is_first"]) for s in segments)
    length = min(context + horizon, longest)
    if length < 2:  # nothing to predict: a bad --context/--horizon, or 1-step episodes
        raise ConfigError(
            f"a dream needs 2 or more steps: --context {context} + --horizon {horizon} "
            f"steps, and the longest episode from the {source} has {longest}; raise "
            "--context/--horizon, or dream on an env whose episodes last longer"
        )
    context = min(context, max(1, length // 2)) if length <= context else context
    data = pick_windows(segments, length, count, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        result = open_loop(agent, data, context)
    result.source = source
    return result


# ------------------------------------------------------------------ drawing
def to_rgb(image: np.ndarray) -> np.ndarray:
    """(..., H, W, C) in 0..255 -> uint8 RGB (grey channels repeated, extra ones dropped)."""
    image = np.clip(np.asarray(image, np.float32), 0, 255).round().astype(np.uint8)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, -1)
    elif image.shape[-1] == 2:
        image = np.concatenate([image, image[..., :1]], -1)
    return image[..., :3]


def _framed(image: np.ndarray, colour: tuple[int, int, int], width: int = BORDER) -> np.ndarray:
    h, w = image.shape[:2]
    out = np.empty((h + 2 * width, w + 2 * width, 3), np.uint8)
    out[:] = colour
    out[width : width + h, width : width + w] = image
    return out


def _triplet(dream: Dream, key: str, i: int, t: int) -> list[np.ndarray]:
    true = to_rgb(dream.truth[key][i, t])
    pred = to_rgb(dream.pred[key][i, t])
    diff = np.abs(dream.truth[key][i, t].astype(np.float32) - dream.pred[key][i, t])
    err = to_rgb(diff.mean(-1, keepdims=True))  # grey: white where the model is wrong
    return [true, pred, err]


def phase_colour(dream: Dream, t: int) -> tuple[int, int, int]:
    return OBSERVED if t < dream.context else IMAGINED


def _image_key(dream: Dream, key: str | None) -> str:
    if key is None:
        if not dream.images:
            raise ValueError("this dream has no image observations")
        return dream.images[0]
    return key


def video_tensor(dream: Dream, key: str | None = None) -> np.ndarray:
    """(N, T, C, H', W') uint8 for TensorBoard: true | model | error, framed by phase."""
    key = _image_key(dream, key)
    videos = []
    for i in range(dream.count):
        frames = []
        for t in range(dream.length):
            colour = phase_colour(dream, t)
            cells = [_framed(x, colour) for x in _triplet(dream, key, i, t)]
            frames.append(np.concatenate(cells, 1))
        videos.append(np.stack(frames))
    return np.stack(videos).transpose(0, 1, 4, 2, 3).copy()


def _label_strip(width: int, height: int, text: str, colour: tuple[int, int, int]) -> np.ndarray:
    strip = Image.new("RGB", (width, height), (0, 0, 0))
    ImageDraw.Draw(strip).text((3, 1), text, fill=colour)
    return np.asarray(strip)


def _pad_to(frames: np.ndarray, multiple: int) -> np.ndarray:
    h, w = frames.shape[-3:-1]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return frames
    pad = [(0, 0)] * (frames.ndim - 3) + [(0, ph), (0, pw), (0, 0)]
    return np.pad(frames, pad)


def video_frames(dream: Dream, key: str | None = None, scale: int = 2) -> np.ndarray:
    """(T, H, W, 3) uint8 frames for a GIF / MP4: one row per sequence of true | model |
    error, each framed green (observed) or red (imagined), under a label naming the phase.
    Height and width are padded to multiples of 16 (what video codecs want)."""
    key = _image_key(dream, key)
    tensor = video_tensor(dream, key).transpose(0, 1, 3, 4, 2)  # (N, T, H, W, C)
    rows = np.concatenate(list(tensor), 1)  # (T, N*H, W, C)
    rows = rows.repeat(scale, 1).repeat(scale, 2)
    out = []
    for t in range(dream.length):
        phase = "observed" if t < dream.context else "imagined"
        text = f"t={t:<3d} {phase}   true | model | error"
        strip = _label_strip(rows.shape[2], 14, text, phase_colour(dream, t))
        out.append(np.concatenate([strip, rows[t]], 0))
    return _pad_to(np.stack(out), 16)


@dataclass
class GridLayout:
    """Pixel positions of the cells of `image_grid`: cell (sequence, row, column) is the
    framed frame whose top-left corner is `cell(...)`, of size `cell_h` x `cell_w`."""

    left: int
    top: int
    cell_h: int
    cell_w: int
    gap: int

    def cell(self, seq: int, row: int, col: int) -> tuple[int, int]:
        y = self.top + seq * (3 * self.cell_h + self.gap) + row * self.cell_h
        return y, self.left + col * self.cell_w


def grid_layout(dream: Dream, key: str | None = None) -> GridLayout:
    key = _image_key(dream, key)
    h, w = dream.truth[key].shape[2:4]
    return GridLayout(left=44, top=16, cell_h=h + 2 * BORDER, cell_w=w + 2 * BORDER, gap=8)


def image_grid(dream: Dream, key: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8: for each sequence rows true / model / error, one column per step;
    observed columns framed green and labelled 'obs', imagined ones red and 'dream'."""
    key = _image_key(dream, key)
    lay = grid_layout(dream, key)
    height = lay.top + dream.count * (3 * lay.cell_h + lay.gap)
    width = lay.left + dream.length * lay.cell_w
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for t in range(dream.length):
        label = ("obs " if t < dream.context else "dream ") + str(t)
        draw.text((lay.left + t * lay.cell_w + 2, 2), label, fill=phase_colour(dream, t))
    pixels = np.asarray(canvas).copy()
    for i in range(dream.count):
        for t in range(dream.length):
            colour = phase_colour(dream, t)
            for r, img in enumerate(_triplet(dream, key, i, t)):
                y, x = lay.cell(i, r, t)
                pixels[y : y + lay.cell_h, x : x + lay.cell_w] = _framed(img, colour)
    canvas = Image.fromarray(pixels)
    draw = ImageDraw.Draw(canvas)
    for i in range(dream.count):
        for r, name in enumerate(ROWS):
            y, _ = lay.cell(i, r, 0)
            draw.text((2, y + lay.cell_h // 2 - 6), name, fill=(0, 0, 0))
    return np.asarray(canvas)


def vector_figure(dream: Dream, path: str | Path, max_dims: int = 24) -> Path:
    """Predicted vs true curves per vector dimension, the observed context shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [(k, d) for k in dream.vectors for d in range(dream.truth[k].shape[-1])]
    curves = curves[:max_dims]
    cols = min(4, len(curves))
    rows = -(-len(curves) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows + 0.4), squeeze=False)
    steps = np.arange(dream.length)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (k, d) in zip(axes.flat, curves):
        ax.axvspan(-0.5, dream.context - 0.5, color="0.88", label="observed")
        for i in range(dream.count):
            c = colours[i % len(colours)]
            first = i == 0
            ax.plot(steps, dream.truth[k][i, :, d], color=c, lw=1.2, label="true" * first)
            ax.plot(steps, dream.pred[k][i, :, d], color=c, lw=1.2, ls="--", label="model" * first)
        ax.set_title(f"{k}[{d}]", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(curves) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(
        f"open-loop prediction: {dream.context} observed steps (shaded), "
        f"{dream.length - dream.context} imagined with the real actions; solid true, dashed model",
        fontsize=9,
    )
    fig.supxlabel("step", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_dream(dream: Dream, out: str | Path, fps: int = 10) -> dict[str, Path]:
    """Write the dream's files beside `out` (its suffix is replaced): for images `.gif`,
    `.mp4` and the `.png` grid; for vectors a `.png` of curves (`-vectors.png` when the
    observation has images too). Returns {kind: path}."""
    import imageio.v3 as iio

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.with_suffix("")
    paths: dict[str, Path] = {}
    if dream.images:
        frames = video_frames(dream)
        paths["gif"] = stem.with_suffix(".gif")
        iio.imwrite(paths["gif"], frames, duration=1000 / fps, loop=0)
        paths["mp4"] = stem.with_suffix(".mp4")
        iio.imwrite(paths["mp4"], frames, fps=fps, macro_block_size=16)
        paths["png"] = stem.with_suffix(".png")
        iio.imwrite(paths["png"], image_grid(dream))
    if dream.vectors:
        name = f"{stem.name}-vectors.png" if dream.images else f"{stem.name}.png"
        paths["vectors"] = vector_figure(dream, stem.with_name(name))
    return paths


# ------------------------------------------------------------------ training hook
def dream_during_training(
    agent: Agent,
    cfg: DictConfig,
    replay: Replay,
    logdir: str | Path,
    logger: Logger | None,
    step: int,
) -> Path | None:
    """The trainer's hook: dream on the live replay, log the video to TensorBoard and
    write `<logdir>/dreams/step-<step>.gif` (or `.png` curves for vector observations)."""
    if not replay.size:
        return None
    result = dream(agent, cfg, context=5, horizon=45, count=3, seed=step, replay=replay)
    out = Path(logdir) / "dreams" / f"step-{step:09d}"
    out.parent.mkdir(parents=True, exist_ok=True)
    if result.images:
        video = video_tensor(result)
        if logger is not None:
            logger.video("dream/video", step, video)
            logger.write(step, {f"dream/mse_{k}": v for k, v in result.mse().items()})
        path = out.with_suffix(".gif")
        import imageio.v3 as iio

        iio.imwrite(path, video_frames(result, scale=1), duration=100, loop=0)
        return path
    if logger is not None:
        logger.write(step, {f"dream/mse_{k}": v for k, v in result.mse().items()})
    return vector_figure(result, out.with_suffix(".png"))
