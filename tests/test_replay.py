import numpy as np
import pytest

from reverie.replay import Replay


def step(i: int, stream: int = 0) -> dict:
    return {
        "vector": np.full(3, i, np.float32),
        "index": np.int64(i),
        "stream": np.int64(stream),
        "is_first": np.bool_(i % 10 == 0),
        "deter": np.zeros(2, np.float16),
    }


def fill(replay: Replay, n: int, streams: int = 1) -> None:
    for i in range(n):
        for s in range(streams):
            replay.add(s, step(i, s))


def test_sequences_are_consecutive_and_cross_chunks():
    replay = Replay(capacity=1000, chunk=16, seed=0)
    fill(replay, 100, streams=2)
    data, keys = replay.sample(64, 20)
    assert data["vector"].shape == (64, 20, 3)
    diffs = np.diff(data["index"], axis=1)
    assert np.all(diffs == 1)  # consecutive steps, also across the 16-step chunks
    assert np.all(data["stream"] == data["stream"][:, :1])  # one stream per row
    starts = data["index"][:, 0]
    assert any(s % 16 > 16 - 20 % 16 for s in starts)  # some rows start near a chunk end


def test_capacity_bounds_memory_and_drops_oldest():
    replay = Replay(capacity=64, chunk=16, seed=0)
    fill(replay, 200)
    assert replay.size <= 64
    data, _ = replay.sample(32, 8)
    assert data["index"].min() >= 200 - 64 - 16
    assert replay.nbytes <= 5 * 16 * (3 * 4 + 8 + 8 + 1 + 4)


def test_uniform_covers_range_and_recency_prefers_new():
    uniform = Replay(capacity=10_000, chunk=64, seed=0)
    recency = Replay(capacity=10_000, chunk=64, selector="recency", seed=0)
    fill(uniform, 2000)
    fill(recency, 2000)
    u = uniform.sample(512, 4)[0]["index"][:, 0]
    r = recency.sample(512, 4)[0]["index"][:, 0]
    assert u.min() < 200 and u.max() > 1800
    assert np.median(r) > np.median(u) + 300


def test_write_latents_lands_on_sampled_steps():
    replay = Replay(capacity=1000, chunk=16, seed=0)
    fill(replay, 50)
    data, keys = replay.sample(4, 10)
    latents = {"deter": np.ones((4, 9, 2), np.float16) * 7}
    replay.write_latents(keys, 1, latents)
    for stream, start in keys:
        again = replay._read(stream, start, 10)
        assert np.all(again["deter"][1:] == 7)


def test_chunks_saved_and_loaded(tmp_path):
    replay = Replay(capacity=1000, chunk=16, directory=tmp_path, seed=0)
    fill(replay, 40, streams=2)
    replay.flush()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"{s:03d}-{i:08d}.npz" for s in range(2) for i in range(3)]
    again = Replay(capacity=1000, chunk=16, directory=tmp_path, seed=0)
    assert again.load() == 80
    data, _ = again.sample(8, 10)
    assert np.all(np.diff(data["index"], axis=1) == 1)
    # new steps continue the loaded streams
    again.add(0, step(40))
    assert again.size == 81


def test_corrupt_and_truncated_chunks_are_skipped(tmp_path):
    replay = Replay(capacity=1000, chunk=16, directory=tmp_path, seed=0)
    fill(replay, 48)
    replay.flush()
    paths = sorted(tmp_path.glob("*.npz"))
    paths[-1].write_bytes(paths[-1].read_bytes()[:100])  # truncated
    raw = bytearray(paths[0].read_bytes())
    raw[50] ^= 0xFF  # a flipped byte
    paths[0].write_bytes(bytes(raw))
    again = Replay(capacity=1000, chunk=16, directory=tmp_path, seed=0)
    assert again.load() == 16
    assert sorted(again.skipped_files) == sorted([str(paths[0]), str(paths[-1])])


def test_sample_before_enough_data_raises():
    replay = Replay(capacity=100, chunk=16)
    fill(replay, 5)
    assert not replay.can_sample(10)
    with pytest.raises(RuntimeError, match="no sequence"):
        replay.sample(2, 10)


def test_disk_budget_deletes_oldest_chunk_files(tmp_path):
    probe = Replay(capacity=1000, chunk=16, directory=tmp_path / "probe", seed=0)
    fill(probe, 16)
    probe.flush()
    file_bytes = next((tmp_path / "probe").iterdir()).stat().st_size
    budget_mb = 4.5 * file_bytes / 2**20  # room for 4 full chunk files
    directory = tmp_path / "replay"
    replay = Replay(1000, 16, directory, seed=0, disk_budget_mb=budget_mb)
    fill(replay, 200, streams=2)  # 12 full chunks per stream, 24 files written
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["000-00000010.npz", "000-00000011.npz", "001-00000010.npz", "001-00000011.npz"]
    assert sum(p.stat().st_size for p in directory.iterdir()) <= budget_mb * 2**20
    assert replay.size == 400  # memory keeps its own bound (capacity), not the disk's
    # a restart loads what is left and keeps enforcing the budget, oldest index first
    again = Replay(1000, 16, directory, seed=0, disk_budget_mb=budget_mb)
    assert again.load() == 4 * 16
    for i in range(200, 232):  # two more chunk files of stream 0
        again.add(0, step(i, 0))
    again.flush()
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["000-00000011.npz", "000-00000012.npz", "000-00000013.npz", "001-00000011.npz"]
    unlimited = Replay(1000, 16, tmp_path / "all", seed=0)
    fill(unlimited, 200)
    assert len(list((tmp_path / "all").iterdir())) == 12


@pytest.mark.slow
def test_memory_is_flat_once_capacity_is_reached():
    """RSS between 2x and 4x capacity (pixel steps, sampling as training does) grows < 10%
    of the replay's own memory. Runs benchmarks/memory.py (the full-size version's small
    twin) in a fresh process, so other tests' allocations do not blur the measurement."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "memory.py"
    capacity = 1024
    out = subprocess.run(
        [
            sys.executable,
            str(path),
            "--capacity",
            str(capacity),
            "--chunk",
            "128",
            "--steps",
            str(4 * capacity),
            "--every",
            str(capacity // 2),
            "--sample-every",
            "32",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    base = float(re.search(r"start RSS (\d+) MiB", out).group(1))
    rows = [
        tuple(map(float, line.split()))
        for line in out.splitlines()
        if re.fullmatch(r"\s*\d+\s+\d+\s+[\d.]+", line)
    ]
    rss = {int(step): value for step, _, value in rows}
    assert all(size <= capacity for _, size, _ in rows)
    replay_mb = rss[capacity] - base  # what the full replay (and a sampled batch) costs
    assert replay_mb > 8  # 1024 steps of 12 KiB frames: the measurement sees the replay
    assert rss[4 * capacity] - rss[2 * capacity] < 0.1 * replay_mb, rss


def test_online_queue_serves_each_new_sequence_once_before_uniform_draws():
    replay = Replay(capacity=10_000, chunk=16, seed=0, online_length=10)
    fill(replay, 35, streams=2)  # 3 complete fresh sequences per stream
    data, keys = replay.sample(8, 10)
    starts = sorted(data["index"][:6, 0].tolist())
    assert starts == [0, 0, 10, 10, 20, 20]  # the queued ones come first, in order
    assert sorted(keys[:6]) == [(0, 0), (0, 10), (0, 20), (1, 0), (1, 10), (1, 20)]
    assert not replay.online  # served once: the rest are uniform draws
    for i in range(35, 40):  # steps 30..39 of stream 0 complete a fresh sequence
        replay.add(0, step(i))
    assert replay.sample(1, 10)[0]["index"][0, 0] == 30


def test_online_queue_survives_state_round_trip_and_skips_evicted():
    replay = Replay(capacity=32, chunk=16, seed=0, online_length=10)
    fill(replay, 60)  # the early queued sequences were evicted with their chunks
    again = Replay(capacity=32, chunk=16, seed=0, online_length=10)
    fill(again, 60)
    again.load_state(replay.state())
    a, b = replay.sample(4, 10)[0]["index"], again.sample(4, 10)[0]["index"]
    assert np.array_equal(a, b)
    assert a[:, 0].min() >= 60 - 32 - 16  # nothing from evicted chunks
