"""Replay: per-env streams of fixed-size chunks, sequence sampling, latent write-back, disk chunks.

Each env index owns one stream: a run of consecutive steps split into chunks of
`chunk` steps. A sampled sequence is any `length` consecutive steps of one stream,
so it may cross chunk (and episode) boundaries; the model resets at `is_first`.
Memory is bounded by `capacity` steps: the oldest chunk overall is dropped first.
Chunks are written to `directory` when full and on `flush()` (atomically), and
`load()` brings them back after a restart. `disk_budget_mb` bounds the chunk files on
disk: past it the oldest files (by chunk index) are deleted.

Online queue (2024 code): with `online_length` L > 0, every L new steps of a stream
queue the sequence of those L steps, and `sample` serves queued sequences before drawing
from the selector, so each new step is trained on promptly at least once.
"""

from __future__ import annotations

import io
import re
from collections import deque
from pathlib import Path

import numpy as np

from reverie.files import atomic_write, remove_stale_temps, strip_footer, with_footer

CHUNK_RE = re.compile(r"^(\d{3})-(\d{8})\.npz$")


class Chunk:
    def __init__(self, stream: int, index: int, size: int):
        self.stream, self.index, self.size = stream, index, size
        self.data: dict[str, np.ndarray] = {}
        self.length = 0
        self.saved_length = 0

    def append(self, step: dict[str, np.ndarray]) -> None:
        if not self.data:
            self.data = {
                k: np.zeros((self.size, *np.shape(v)), np.asarray(v).dtype) for k, v in step.items()
            }
        for k, v in step.items():
            self.data[k][self.length] = v
        self.length += 1

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.data.values())


class Replay:
    def __init__(
        self,
        capacity: int,
        chunk: int = 1024,
        directory: str | Path | None = None,
        selector: str = "uniform",
        recency_exponent: float = 3.0,
        seed: int = 0,
        disk_budget_mb: float = 0.0,
        online_length: int = 0,
    ):
        self.capacity, self.chunk = int(capacity), int(chunk)
        self.disk_budget = int(disk_budget_mb * 2**20)  # bytes; 0 = unlimited
        self._disk: dict[tuple[int, int], tuple[Path, int]] | None = None  # (index, stream)
        self.directory = Path(directory) if directory else None
        self.selector, self.recency_exponent = selector, recency_exponent
        self.rng = np.random.default_rng(seed)
        self.streams: dict[int, deque[Chunk]] = {}
        self.size = 0  # steps held in memory
        self.skipped_files: list[str] = []
        self.online_length = int(online_length)
        self.online: deque[tuple[int, int]] = deque()  # (stream, start) of fresh sequences
        self._fresh: dict[int, int] = {}  # stream -> steps added since its last queued one

    # ------------------------------------------------------------------ adding
    def add(self, stream: int, step: dict[str, np.ndarray]) -> None:
        chunks = self.streams.setdefault(stream, deque())
        if not chunks or chunks[-1].length == self.chunk:
            if chunks:
                self._save(chunks[-1])
            index = chunks[-1].index + 1 if chunks else 0
            chunks.append(Chunk(stream, index, self.chunk))
        chunks[-1].append(step)
        self.size += 1
        if self.online_length:
            fresh = self._fresh.get(stream, 0) + 1
            if fresh == self.online_length:
                end = chunks[-1].index * self.chunk + chunks[-1].length
                self.online.append((stream, end - fresh))
                fresh = 0
            self._fresh[stream] = fresh
        while self.size > self.capacity:
            self._evict_oldest()

    def add_batch(self, steps: dict[str, np.ndarray], streams: range | list[int]) -> None:
        """Add one step for each env: every value is (N, ...)."""
        for i, stream in enumerate(streams):
            self.add(stream, {k: v[i] for k, v in steps.items()})

    def _evict_oldest(self) -> None:
        stream = min(
            (s for s, c in self.streams.items() if c), key=lambda s: self.streams[s][0].index
        )
        chunk = self.streams[stream].popleft()
        self.size -= chunk.length

    def recent(self, keys: list[str], chunks: int = 4) -> list[dict[str, np.ndarray]]:
        """The newest steps of each stream, up to `chunks` chunks of it, as one run of
        consecutive steps (T, ...) per stream, with the given keys (streams lacking any of
        them are left out). They may cross episode boundaries (`is_first`)."""
        out = []
        for stream in self.streams.values():
            held = [c for c in list(stream)[-chunks:] if c.length and c.data]
            if held and all(k in held[0].data for k in keys):
                out.append({k: np.concatenate([c.data[k][: c.length] for c in held]) for k in keys})
        return out

    # ----------------------------------------------------------------- sampling
    def _stream_span(self, stream: int) -> tuple[int, int]:
        """(first, end) positions of the steps held for a stream; positions are absolute."""
        chunks = self.streams[stream]
        first = chunks[0].index * self.chunk
        end = chunks[-1].index * self.chunk + chunks[-1].length
        return first, end

    def can_sample(self, length: int) -> bool:
        return any(self._valid_starts(s, length) > 0 for s in self.streams if self.streams[s])

    def _valid_starts(self, stream: int, length: int) -> int:
        first, end = self._stream_span(stream)
        return max(0, end - first - length + 1)

    def sample(self, batch: int, length: int) -> tuple[dict[str, np.ndarray], list]:
        """(B, length, ...) arrays and the (stream, start) of each row, for write-back."""
        streams = [s for s in self.streams if self.streams[s]]
        counts = np.array([self._valid_starts(s, length) for s in streams], np.float64)
        if counts.sum() == 0:
            raise RuntimeError(f"replay holds no sequence of {length} steps yet")
        picks = self.rng.choice(len(streams), size=batch, p=counts / counts.sum())
        rows, keys = [], []
        for p in picks:
            fresh = self._pop_online(length)
            if fresh is not None:
                rows.append(self._read(*fresh, length))
                keys.append(fresh)
                continue
            stream, n = streams[p], int(counts[p])
            if self.selector == "recency":
                age = int(n * self.rng.random() ** self.recency_exponent)
                offset = n - 1 - min(age, n - 1)
            else:
                offset = int(self.rng.integers(n))
            start = self._stream_span(stream)[0] + offset
            rows.append(self._read(stream, start, length))
            keys.append((stream, start))
        data = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
        return data, keys

    def _pop_online(self, length: int) -> tuple[int, int] | None:
        """The oldest queued fresh sequence still held in memory, or None."""
        while self.online:
            stream, start = self.online.popleft()
            if stream in self.streams and self.streams[stream]:
                first, end = self._stream_span(stream)
                if first <= start and start + length <= end:
                    return stream, start
        return None

    def _locate(self, stream: int, pos: int) -> tuple[Chunk, int]:
        chunks = self.streams[stream]
        i = pos // self.chunk - chunks[0].index
        return chunks[i], pos % self.chunk

    def _read(self, stream: int, start: int, length: int) -> dict[str, np.ndarray]:
        parts, pos = [], start
        while pos < start + length:
            chunk, off = self._locate(stream, pos)
            take = min(chunk.length - off, start + length - pos)
            parts.append({k: v[off : off + take] for k, v in chunk.data.items()})
            pos += take
        if len(parts) == 1:
            return {k: v.copy() for k, v in parts[0].items()}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def write_latents(self, keys: list, offset: int, latents: dict[str, np.ndarray]) -> None:
        """Store new latents (B, T, ...) at steps `start + offset ...` of each sampled row."""
        for row, (stream, start) in enumerate(keys):
            if stream not in self.streams or not self.streams[stream]:
                continue
            first, end = self._stream_span(stream)
            for t in range(next(iter(latents.values())).shape[1]):
                pos = start + offset + t
                if pos < first or pos >= end:
                    continue
                chunk, off = self._locate(stream, pos)
                for k, v in latents.items():
                    chunk.data[k][off] = v[row, t]

    # --------------------------------------------------------------------- disk
    def _save(self, chunk: Chunk) -> None:
        if self.directory is None or chunk.length == chunk.saved_length:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{chunk.stream:03d}-{chunk.index:08d}.npz"
        buf = io.BytesIO()
        arrays = {k: v[: chunk.length] for k, v in chunk.data.items()}
        # allow_pickle named (its default): else mypy matches **arrays against the bool param
        np.savez(buf, allow_pickle=True, **arrays)
        payload = buf.getvalue()
        atomic_write(path, with_footer(payload))
        chunk.saved_length = chunk.length
        if self.disk_budget:
            self._enforce_budget((chunk.index, chunk.stream), path)

    def chunk_files(self) -> list[tuple[int, int, Path]]:
        """(index, stream, path) of the chunk files on disk, oldest first."""
        if self.directory is None or not self.directory.exists():
            return []
        files = []
        for path in self.directory.iterdir():
            m = CHUNK_RE.match(path.name)
            if m:
                files.append((int(m.group(2)), int(m.group(1)), path))
        return sorted(files)

    def _enforce_budget(self, key: tuple[int, int], path: Path) -> None:
        """Delete the oldest chunk files (never the one just written) past the disk budget."""
        if self._disk is None:
            self._disk = {(i, s): (p, p.stat().st_size) for i, s, p in self.chunk_files()}
        self._disk[key] = (path, path.stat().st_size)
        total = sum(size for _, size in self._disk.values())
        while total > self.disk_budget and len(self._disk) > 1:
            oldest = min(self._disk)
            if oldest == key:
                break
            old_path, size = self._disk.pop(oldest)
            old_path.unlink(missing_ok=True)
            total -= size

    def flush(self) -> None:
        """Write every chunk with unsaved steps (the open ones, at checkpoint time)."""
        for chunks in self.streams.values():
            for chunk in chunks:
                self._save(chunk)

    def load(self) -> int:
        """Load chunks from disk, newest first up to capacity. Returns steps loaded.

        A truncated or corrupt chunk is skipped and reported in `skipped_files`.
        """
        if self.directory is None or not self.directory.exists():
            return 0
        remove_stale_temps(self.directory)
        files = self.chunk_files()[::-1]
        loaded: list[Chunk] = []
        total = 0
        for index, stream, path in files:
            if total >= self.capacity:
                break
            arrays = read_chunk(path)
            if arrays is None:
                self.skipped_files.append(str(path))
                continue
            chunk = Chunk(stream, index, self.chunk)
            length = len(next(iter(arrays.values())))
            chunk.data = {
                k: np.zeros((self.chunk, *v.shape[1:]), v.dtype) for k, v in arrays.items()
            }
            for k, v in arrays.items():
                chunk.data[k][:length] = v
            chunk.length = chunk.saved_length = length
            loaded.append(chunk)
            total += length
        self.streams = {}
        self.size = 0
        for chunk in sorted(loaded, key=lambda c: (c.stream, c.index)):
            chunks = self.streams.setdefault(chunk.stream, deque())
            if chunks and chunks[-1].index + 1 != chunk.index:
                chunks.clear()  # a gap: keep only the newest consecutive run
                self.size = sum(c.length for cs in self.streams.values() for c in cs)
            chunks.append(chunk)
            self.size += chunk.length
        # a partial last chunk stays open: new steps of that stream continue in it
        return self.size

    def state(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "online": list(self.online),
            "fresh": dict(self._fresh),
        }

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.online = deque(tuple(x) for x in state.get("online", []))
        self._fresh = {int(k): int(v) for k, v in state.get("fresh", {}).items()}

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for cs in self.streams.values() for c in cs)


def read_chunk(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a chunk file, or None if it is unreadable, truncated or corrupt."""
    try:
        payload = strip_footer(path.read_bytes(), path)
        with np.load(io.BytesIO(payload)) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception:  # noqa: BLE001 - any read or decode failure means a bad file
        return None
